// Offline support: the page, its scripts and each model's manifest.json are kept here, so a
// reload with the network off still starts. Network first (a rebuilt model is never served
// stale); the cached copy only when the network fails. Model files themselves are cached by
// lib/integrity.js under versioned keys, checked against the manifest on every read.
const SHELL = "wsd-shell-v6"; // bump when FILES changes, so an installed worker refreshes
const FILES = ["/", "/app.js", "/app.css", "/sw.js", "/tvmjs.bundle.js", "/models/index.json",
  "/lib/errors.js", "/lib/gpu.js", "/lib/integrity.js", "/lib/pipeline.js", "/lib/session.js", "/lib/tokenizer.js",
  "/lib/validate.js", "/lib/profile.js", "/lib/pacing.js", "/lib/remote.js", "/lib/assets.js", "/lib/tensors.js",
  "/lib/probes.js", "/lib/lora.js"];

self.addEventListener("install", (event) =>
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()))
);
// An older shell (a previous SHELL name) is deleted once this worker takes over: they would pile up.
async function dropOldShells() {
  const names = await caches.keys();
  await Promise.all(names.filter((n) => n.startsWith("wsd-shell-") && n !== SHELL).map((n) => caches.delete(n)));
}
self.addEventListener("activate", (event) => event.waitUntil(dropOldShells().then(() => self.clients.claim())));

// The page names the model it opened: that model's manifest.json joins the shell, even when the
// page fetched it before this worker took over (a first visit), so an offline reload finds it.
self.addEventListener("message", (event) => {
  const keep = event.data && event.data.keep;
  if (typeof keep !== "string" || !/^\/models\/[^/]+\/manifest\.json$/.test(keep)) return;
  event.waitUntil(caches.open(SHELL).then((cache) => cache.add(keep)));
});

function isShell(url) {
  return url.origin === self.location.origin && !/\.(bin|wasm)$/.test(url.pathname) && !url.pathname.includes("/schedulers/") && !url.pathname.includes("/tokenizer/");
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || !isShell(url)) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(SHELL);
      try {
        const response = await fetch(event.request, { cache: "no-cache" });
        if (response.ok) await cache.put(url.pathname, response.clone());
        return response;
      } catch (err) {
        const hit = await cache.match(url.pathname);
        if (hit) return hit;
        throw err;
      }
    })()
  );
});
