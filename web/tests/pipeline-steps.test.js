import assert from "node:assert/strict";
import { test } from "node:test";
import { stepSubmitted } from "../lib/pipeline.js";

// A queue whose onSubmittedWorkDone promises resolve when the test says the GPU finished them.
function fakeSession() {
  const log = [];
  const pending = [];
  const session = {
    tvm: { lib: { webGPUContext: { flushCommands: () => log.push("flush") } } },
    device: {
      queue: {
        onSubmittedWorkDone() {
          const id = pending.length;
          log.push(`submitted ${id}`);
          return new Promise((resolve) => pending.push(() => (log.push(`done ${id}`), resolve(id))));
        },
      },
    },
  };
  return { session, log, finish: (id) => pending[id]() };
}

test("a step's commands are submitted and the loop waits for the step before it only", async () => {
  const { session, log, finish } = fakeSession();
  const first = await stepSubmitted(session, null); // nothing before it: no wait
  assert.deepEqual(log, ["flush", "submitted 0"]);
  let returned = false;
  const second = stepSubmitted(session, first).then((p) => ((returned = true), p));
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(returned, false, "step 1 went on before step 0 finished");
  assert.deepEqual(log, ["flush", "submitted 0", "flush", "submitted 1"]); // step 1 was flushed before the wait
  finish(0);
  const inFlight = await second;
  assert.equal(returned, true);
  finish(1);
  assert.equal(await inFlight.done, 1, "what is returned is the newest step's completion");
});

test("a tvmjs without flushCommands (every dispatch submitted at once) is waited on the same way", async () => {
  const { session, finish } = fakeSession();
  delete session.tvm.lib.webGPUContext.flushCommands;
  const first = await stepSubmitted(session, null);
  finish(0);
  assert.equal(await first.done, 0);
});
