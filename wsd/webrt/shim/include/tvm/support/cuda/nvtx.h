/*
 * wsd shim: NVTX profiling ranges. The browser has no NVTX, so a range is a no-op.
 */
#ifndef WSD_SHIM_TVM_SUPPORT_CUDA_NVTX_H_
#define WSD_SHIM_TVM_SUPPORT_CUDA_NVTX_H_

#include <string>

namespace tvm {
namespace support {

class NVTXScopedRange {
 public:
  explicit NVTXScopedRange(const char*) {}
  explicit NVTXScopedRange(const std::string&) {}
  NVTXScopedRange(const NVTXScopedRange&) = delete;
  NVTXScopedRange& operator=(const NVTXScopedRange&) = delete;
};

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_TVM_SUPPORT_CUDA_NVTX_H_
