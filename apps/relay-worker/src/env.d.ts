// Bindings (wrangler.jsonc) and the main module's exports, for `env` and `exports` of "cloudflare:workers".
declare namespace Cloudflare {
  interface Env {
    RELAY: DurableObjectNamespace<import("./relay").RelayObject>;
  }
  interface GlobalProps {
    mainModule: typeof import("./index");
    durableNamespaces: "RelayObject";
  }
}

interface Env extends Cloudflare.Env {}
