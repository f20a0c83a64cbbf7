// Test probe for wsd's runtime support headers (wsd/webrt/shim), built natively by
// tests/test_webrt_shim.py. Usage: serializer_probe MODE < input > output
//   value modes decode stdin with Serializer<T>::Read and re-encode it with ::Write
//   (exit 3: decode failed, 4: bytes left over); the other modes exercise one header.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>
#include <tvm/support/serializer.h>
#include <tvm/support/cuda/nvtx.h>
#include <builtin_fp16.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/support/arena.h"
#include "src/support/base64.h"
#include "src/support/bytes_io.h"
#include "src/support/ring_buffer.h"
#include "src/support/utils.h"

using namespace tvm;
using tvm::support::BytesInStream;
using tvm::support::BytesOutStream;

template <typename T>
int RoundTrip(const std::string& in, std::string* out) {
  BytesInStream strm(in);
  T value;
  if (!strm.Read(&value)) return 3;
  if (strm.Tell() != in.size()) return 4;
  BytesOutStream os(out);
  os.Write(value);
  return 0;
}

int Base64Encode(const std::string& in, std::string* out) {
  BytesOutStream os(out);
  support::Base64OutStream b64(&os);
  b64.Write(in.data(), in.size());
  b64.Finish();
  return 0;
}

int Base64Decode(const std::string& in, std::string* out) {
  BytesInStream is(in);
  support::Base64InStream b64(&is);
  b64.InitPosition();
  char buf[7];  // an odd size, so reads straddle 3-byte groups
  size_t n;
  while ((n = b64.Read(buf, sizeof(buf))) != 0) out->append(buf, n);
  return 0;
}

int HalfToFloat(const std::string& in, std::string* out) {
  for (size_t i = 0; i + 1 < in.size(); i += 2) {
    uint16_t h;
    std::memcpy(&h, in.data() + i, 2);
    float f = __extendXfYf2__<uint16_t, uint16_t, 10, float, uint32_t, 23>(h);
    out->append(reinterpret_cast<const char*>(&f), 4);
  }
  return 0;
}

int FloatToHalf(const std::string& in, std::string* out) {
  for (size_t i = 0; i + 3 < in.size(); i += 4) {
    float f;
    std::memcpy(&f, in.data() + i, 4);
    uint16_t h = __truncXfYf2__<float, uint32_t, 23, uint16_t, uint16_t, 10>(f);
    out->append(reinterpret_cast<const char*>(&h), 2);
  }
  return 0;
}

// Script: 'W' u32 n, n bytes (push) | 'R' u32 n (pop up to n; output them) |
//         'C' u32 n (pop up to n through ReadWithCallback) | 'F' u32 n (fill n bytes of 0xAB
//         through WriteWithCallback). Output: popped bytes, then bytes_available as u64.
int Ring(const std::string& in, std::string* out) {
  support::RingBuffer ring;
  size_t i = 0;
  auto u32 = [&](size_t at) { uint32_t v; std::memcpy(&v, in.data() + at, 4); return v; };
  while (i + 5 <= in.size()) {
    char op = in[i];
    uint32_t n = u32(i + 1);
    i += 5;
    if (op == 'W') {
      ring.Write(in.data() + i, n);
      i += n;
    } else if (op == 'R') {
      n = std::min<size_t>(n, ring.bytes_available());
      std::string buf(n, '\0');
      ring.Read(&buf[0], n);
      out->append(buf);
    } else if (op == 'C') {
      ring.ReadWithCallback([&](const void* data, size_t size) {
        out->append(static_cast<const char*>(data), size);
        return size;
      }, n);
    } else if (op == 'F') {
      size_t got = 0;
      while (got < n) {
        got += ring.WriteWithCallback([&](void* data, size_t size) {
          std::memset(data, 0xAB, size);
          return size;
        }, n - got);
      }
    } else {
      return 6;
    }
  }
  uint64_t avail = ring.bytes_available();
  out->append(reinterpret_cast<const char*>(&avail), 8);
  return 0;
}

// Input: u32 sizes; each allocation is written over fully, then all are checked.
int ArenaCheck(const std::string& in, std::string* out) {
  support::Arena arena;
  for (int round = 0; round < 2; ++round) {
    std::vector<std::pair<uint64_t*, size_t>> blocks;
    for (size_t i = 0; i + 3 < in.size(); i += 4) {
      uint32_t n;
      std::memcpy(&n, in.data() + i, 4);
      n = n % 5000 + 1;
      uint64_t* p = arena.allocate_<uint64_t>(n);
      if (reinterpret_cast<uintptr_t>(p) % alignof(uint64_t) != 0) return 7;
      for (size_t k = 0; k < n; ++k) p[k] = blocks.size() * 1000003ull + k;
      blocks.push_back({p, n});
    }
    for (size_t b = 0; b < blocks.size(); ++b) {
      for (size_t k = 0; k < blocks[b].second; ++k) {
        if (blocks[b].first[k] != b * 1000003ull + k) return 8;  // overlap
      }
    }
    arena.RecycleAll();
  }
  support::NVTXScopedRange range("no-op in the browser");
  *out = support::StartsWith("RPCSessionTimeoutError: x", "RPCSessionTimeoutError: ") &&
                 !support::StartsWith("RPC", "RPCSession") && support::EndsWith("model.wasm", ".wasm")
             ? "ok"
             : "utils";
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::string mode = argv[1];
  std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  std::string out;
  int rc = 2;
  try {
    if (mode == "i32") rc = RoundTrip<int32_t>(in, &out);
    else if (mode == "u64") rc = RoundTrip<uint64_t>(in, &out);
    else if (mode == "f64") rc = RoundTrip<double>(in, &out);
    else if (mode == "dtype") rc = RoundTrip<DLDataType>(in, &out);
    else if (mode == "device") rc = RoundTrip<DLDevice>(in, &out);
    else if (mode == "str") rc = RoundTrip<std::string>(in, &out);
    else if (mode == "vec<str>") rc = RoundTrip<std::vector<std::string>>(in, &out);
    else if (mode == "vec<i64>") rc = RoundTrip<std::vector<int64_t>>(in, &out);
    else if (mode == "vec<vec<i32>>") rc = RoundTrip<std::vector<std::vector<int32_t>>>(in, &out);
    else if (mode == "pair<str,i32>") rc = RoundTrip<std::pair<std::string, int32_t>>(in, &out);
    else if (mode == "map<i64,str>") rc = RoundTrip<std::unordered_map<int64_t, std::string>>(in, &out);
    else if (mode == "map<str,str>") rc = RoundTrip<std::unordered_map<std::string, std::string>>(in, &out);
    else if (mode == "arr<fstr>") rc = RoundTrip<ffi::Array<ffi::String>>(in, &out);
    else if (mode == "arr<dtype>") rc = RoundTrip<ffi::Array<DLDataType>>(in, &out);
    else if (mode == "fmap<fstr,fstr>") rc = RoundTrip<ffi::Map<ffi::String, ffi::String>>(in, &out);
    else if (mode == "b64enc") rc = Base64Encode(in, &out);
    else if (mode == "b64dec") rc = Base64Decode(in, &out);
    else if (mode == "f16>f32") rc = HalfToFloat(in, &out);
    else if (mode == "f32>f16") rc = FloatToHalf(in, &out);
    else if (mode == "ring") rc = Ring(in, &out);
    else if (mode == "arena") rc = ArenaCheck(in, &out);
  } catch (const std::exception& e) {
    std::cerr << e.what() << std::endl;
    return 9;
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return rc;
}
