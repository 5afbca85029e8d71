// The phone's record of its computers, in IndexedDB, shared by the page and the service worker. Counters
// are taken in one readwrite transaction, so the page and the worker never seal two bodies under one.

export interface Computer {
  bridgeId: string;
  name: string;
  /** The relay that serves this app and carries the computer's exchanges. */
  relayOrigin: string;
  token: string;
  /** base64url, 32 bytes. */
  sealKey: string;
  /** The counter the next body is sealed under (the first is 1). */
  nextCounter: number;
  nodeId: string;
  scopes: string[];
  /** The conversation the phone continues on this computer. */
  sessionKey: string;
  /** Whether this phone asked the computer for push notifications. */
  push: boolean;
  /** The computer revoked this phone: never call it again. */
  unpaired: boolean;
  pairedAtMs: number;
}

const DB_NAME = "lanyard";
const COMPUTERS = "computers";
/** Prompts answered from this phone, by `BRIDGE_ID:REQUEST_ID`: a prompt is answered at most once. */
const ANSWERED = "answered";

let opened: Promise<IDBDatabase> | null = null;

function db(): Promise<IDBDatabase> {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(COMPUTERS, { keyPath: "bridgeId" });
      request.result.createObjectStore(ANSWERED, { keyPath: "id" });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

/** Runs `work` in one transaction; resolves with its result once the transaction has committed. */
async function transact<T>(store: string, mode: IDBTransactionMode, work: (s: IDBObjectStore, done: (value: T) => void) => void): Promise<T> {
  const tx = (await db()).transaction(store, mode);
  return new Promise<T>((resolve, reject) => {
    let result: T;
    work(tx.objectStore(store), (value) => (result = value));
    tx.oncomplete = () => resolve(result);
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
  });
}

export const listComputers = (): Promise<Computer[]> =>
  transact(COMPUTERS, "readonly", (s, done) => {
    const request = s.getAll();
    request.onsuccess = () => done((request.result as Computer[]).sort((a, b) => a.pairedAtMs - b.pairedAtMs));
  });

export const getComputer = (bridgeId: string): Promise<Computer | undefined> =>
  transact(COMPUTERS, "readonly", (s, done) => {
    const request = s.get(bridgeId);
    request.onsuccess = () => done(request.result as Computer | undefined);
  });

export const putComputer = (computer: Computer): Promise<void> =>
  transact(COMPUTERS, "readwrite", (s, done) => {
    s.put(computer);
    done(undefined);
  });

export const deleteComputer = (bridgeId: string): Promise<void> =>
  transact(COMPUTERS, "readwrite", (s, done) => {
    s.delete(bridgeId);
    done(undefined);
  });

/** Changes some fields of a stored computer (not its counter) and returns the stored record. */
export const updateComputer = (bridgeId: string, change: Partial<Omit<Computer, "nextCounter" | "bridgeId">>): Promise<Computer | undefined> =>
  transact(COMPUTERS, "readwrite", (s, done) => {
    const request = s.get(bridgeId);
    request.onsuccess = () => {
      const computer = request.result as Computer | undefined;
      if (!computer) return done(undefined);
      const changed = { ...computer, ...change };
      s.put(changed);
      done(changed);
    };
  });

/** Takes the next counter of a computer for good: read and advanced in one readwrite transaction. */
export const takeCounter = (bridgeId: string): Promise<number> =>
  transact(COMPUTERS, "readwrite", (s, done) => {
    const request = s.get(bridgeId);
    request.onsuccess = () => {
      const computer = request.result as Computer | undefined;
      if (!computer) {
        s.transaction.abort();
        return;
      }
      done(computer.nextCounter);
      s.put({ ...computer, nextCounter: computer.nextCounter + 1 });
    };
  });

const answerId = (bridgeId: string, requestId: string) => `${bridgeId}:${requestId}`;

/** How long an answered prompt is remembered: far longer than any prompt stays open. */
const ANSWERED_KEPT_MS = 7 * 24 * 3600 * 1000;

/** Claims the answer to a prompt: true the first time only, whoever (page or worker) asks. */
export const claimAnswer = (bridgeId: string, requestId: string): Promise<boolean> =>
  transact(ANSWERED, "readwrite", (s, done) => {
    const cursor = s.openCursor();
    cursor.onsuccess = () => {
      const at = cursor.result;
      if (!at) return;
      if ((at.value as { atMs: number }).atMs < Date.now() - ANSWERED_KEPT_MS) at.delete();
      at.continue();
    };
    const id = answerId(bridgeId, requestId);
    const request = s.get(id);
    request.onsuccess = () => {
      if (request.result) return done(false);
      s.put({ id, atMs: Date.now() });
      done(true);
    };
  });

/** Gives a claim back when the answer could not be sent, so it can be tried again. */
export const releaseAnswer = (bridgeId: string, requestId: string): Promise<void> =>
  transact(ANSWERED, "readwrite", (s, done) => {
    s.delete(answerId(bridgeId, requestId));
    done(undefined);
  });
