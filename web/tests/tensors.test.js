import assert from "node:assert/strict";
import { test } from "node:test";
import { batchedSync } from "../lib/tensors.js";

test("weights uploads wait for the GPU once per batch of bytes, not per tensor", async () => {
  let waits = 0;
  const device = { deviceType: 15, deviceId: 0, sync: async () => void (waits += 1) };
  const batched = batchedSync(device, [100, 100, 100, 300, 50, 50], 250);
  assert.equal(batched.deviceType, 15); // the rest of the device is the device's
  for (let i = 0; i < 6; ++i) await batched.sync();
  assert.equal(waits, 2); // after 300 bytes and after 400 more; the last 100 wait for the caller's sync
  await batched.sync(); // a record past the list counts as a full batch
  assert.equal(waits, 3);
});
