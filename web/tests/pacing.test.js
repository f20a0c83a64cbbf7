import assert from "node:assert/strict";
import { test } from "node:test";
import { SubmissionPacer } from "../lib/pacing.js";

// A device and a context that behave as tvmjs 0.27's WebGPUContext does: every dispatch is a
// compute pass on one pending encoder, submitted by flushCommands().
function fakeGpu() {
  const submitted = [];
  let next = 0;
  const device = {
    createCommandEncoder() {
      const encoder = { id: next++, passes: [], finished: false };
      encoder.beginComputePass = () => {
        assert.equal(encoder.finished, false, "a pass began on a finished encoder");
        const pass = { ended: false };
        pass.end = () => {
          pass.ended = true;
          encoder.passes.push(pass);
        };
        return pass;
      };
      encoder.finish = () => {
        encoder.finished = true;
        return encoder;
      };
      return encoder;
    },
  };
  const context = {
    pendingEncoder: null,
    flushCommands() {
      if (this.pendingEncoder) submitted.push(this.pendingEncoder.finish());
      this.pendingEncoder = null;
    },
    dispatch() {
      if (!this.pendingEncoder) this.pendingEncoder = device.createCommandEncoder();
      const pass = this.pendingEncoder.beginComputePass();
      pass.end();
    },
  };
  return { device, context, submitted };
}

test("dispatches are submitted every `every` passes, and the rest at the sync", () => {
  const { device, context, submitted } = fakeGpu();
  const pacer = new SubmissionPacer(device, context, 4);
  for (let i = 0; i < 10; ++i) context.dispatch();
  assert.deepEqual(submitted.map((e) => e.passes.length), [4, 4]);
  context.flushCommands(); // tvmjs's sync
  assert.deepEqual(submitted.map((e) => e.passes.length), [4, 4, 2]);
  assert.equal(pacer.flushes, 2);
  assert.ok(submitted.every((e) => e.passes.every((p) => p.ended)));
});

test("every = 0 is off: one submission per sync, as tvmjs does alone", () => {
  const { device, context, submitted } = fakeGpu();
  const pacer = new SubmissionPacer(device, context, 0);
  for (let i = 0; i < 10; ++i) context.dispatch();
  assert.equal(submitted.length, 0);
  context.flushCommands();
  assert.deepEqual(submitted.map((e) => e.passes.length), [10]);
  pacer.every = 3; // switched at run time (the GPU benchmark compares both in one run)
  for (let i = 0; i < 7; ++i) context.dispatch();
  assert.deepEqual(submitted.map((e) => e.passes.length), [10, 3, 3]);
});

test("passes on encoders that are not tvmjs's pending one are never submitted by the pacer", () => {
  const { device, context, submitted } = fakeGpu();
  new SubmissionPacer(device, context, 1);
  const other = device.createCommandEncoder(); // e.g. the profiler's or a caller's
  other.beginComputePass().end();
  other.beginComputePass().end();
  assert.equal(submitted.length, 0);
  assert.equal(other.finished, false);
  context.dispatch();
  assert.equal(submitted.length, 1);
});

test("a tvmjs without flushCommands (older releases submit per dispatch) is left alone", () => {
  const { device } = fakeGpu();
  const original = device.createCommandEncoder;
  const pacer = new SubmissionPacer(device, { pendingEncoder: null }, 4);
  assert.equal(pacer.supported, false);
  assert.equal(device.createCommandEncoder, original);
});
