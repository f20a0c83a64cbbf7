// The page the harness drives: window.wsd is lib/remote.js's method table (see there).
import { createRemote } from "/lib/remote.js";

const statusEl = document.getElementById("status");

function setStatus(text) {
  statusEl.textContent = text;
}

// Fixed scenarios for the driver's own tests (never arbitrary code): a page that
// throws, and a page whose main thread never returns.
function testScenario(name) {
  if (name === "throw") throw new Error("deliberate test exception");
  if (name === "hang") {
    for (;;) {
      // a busy main thread: only a deadline enforced from outside the page ends this
    }
  }
  return name;
}

window.wsd = { ...createRemote({ onStatus: setStatus }), ready: true };
// The hook exists only when the driver asks for it (index.html?test=1).
if (new URLSearchParams(window.location.search).has("test")) window.wsd.testScenario = testScenario;
setStatus("ready");
