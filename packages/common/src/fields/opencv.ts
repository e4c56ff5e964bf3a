import type CV from '@techstark/opencv-js';

export type OpenCv = typeof CV;

let loading: Promise<OpenCv> | undefined;

/**
 * OpenCV (the `@techstark/opencv-js` WebAssembly build), loaded once per process (~1 s, ~100 MB). Its `Mat`s live
 * in the WebAssembly heap: every one made must be `delete()`d.
 */
export function loadOpenCv(): Promise<OpenCv> {
  loading ??= (async () => {
    // The Emscripten build installs process-wide `uncaughtException` / `unhandledRejection` handlers (the latter
    // aborts the runtime): a worker keeps its own, so whatever the import adds is removed again.
    const before = { exception: process.listeners('uncaughtException'), rejection: process.listeners('unhandledRejection') };
    const mod = (await import('@techstark/opencv-js')) as unknown as { default?: unknown };
    const cv = (mod.default ?? mod) as OpenCv & { onRuntimeInitialized?: () => void; then?: unknown };
    if (!cv.Mat) await new Promise<void>((resolve) => (cv.onRuntimeInitialized = resolve));
    for (const l of process.listeners('uncaughtException')) if (!before.exception.includes(l)) process.off('uncaughtException', l);
    for (const l of process.listeners('unhandledRejection')) if (!before.rejection.includes(l)) process.off('unhandledRejection', l);
    // Emscripten's module is a thenable that resolves to itself: resolving a promise with it never settles.
    delete cv.then;
    return cv;
  })();
  return loading;
}
