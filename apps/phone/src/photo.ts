// A photo from the camera or gallery, scaled on the phone until its base64 fits the sealed body's budget
// (the whole sealed envelope must stay under 64 KiB).

export interface Photo {
  mediaType: "image/jpeg";
  /** Standard base64. */
  data: string;
  /** A blob: URL for the preview. */
  url: string;
}

const SIDES = [1600, 1280, 1024, 800, 640, 480, 360, 240];
const QUALITIES = [0.82, 0.7, 0.55, 0.4];

async function decode(file: Blob): Promise<ImageBitmap> {
  try {
    return await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    throw new Error("This file is not a picture this browser can read.");
  }
}

const toBlob = (canvas: HTMLCanvasElement, quality: number) =>
  new Promise<Blob>((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not encode the photo"))), "image/jpeg", quality));

async function base64(blob: Blob): Promise<string> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The largest JPEG of the photo whose base64 is at most `budget` characters. */
export async function scalePhoto(file: Blob, budget: number): Promise<Photo> {
  const bitmap = await decode(file);
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d")!;
  try {
    for (const side of SIDES) {
      const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      context.fillStyle = "#fff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      for (const quality of QUALITIES) {
        const blob = await toBlob(canvas, quality);
        if (Math.ceil(blob.size / 3) * 4 <= budget) return { mediaType: "image/jpeg", data: await base64(blob), url: URL.createObjectURL(blob) };
      }
    }
  } finally {
    bitmap.close();
  }
  throw new Error("This photo cannot be made small enough to send.");
}
