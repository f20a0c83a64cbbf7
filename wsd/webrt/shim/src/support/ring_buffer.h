/*
 * wsd shim: a growable FIFO byte queue, used by the RPC endpoint to buffer
 * traffic between the channel and the protocol handler.
 */
#ifndef WSD_SHIM_SUPPORT_RING_BUFFER_H_
#define WSD_SHIM_SUPPORT_RING_BUFFER_H_

#include <tvm/ffi/error.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tvm {
namespace support {

class RingBuffer {
 public:
  RingBuffer() : buf_(kInitCapacity) {}

  size_t bytes_available() const { return size_; }
  size_t capacity() const { return buf_.size(); }

  /*! \brief Make room for at least n bytes in total, keeping the queued bytes. */
  void Reserve(size_t n) {
    if (n <= buf_.size()) return;
    std::vector<char> grown(std::max(n, buf_.size() * 2));
    CopyOut(grown.data(), size_);
    buf_.swap(grown);
    head_ = 0;
  }

  /*! \brief Pop exactly `size` bytes; the caller checked bytes_available(). */
  void Read(void* data, size_t size) {
    TVM_FFI_ICHECK_LE(size, size_) << "RingBuffer: read past the queued bytes";
    CopyOut(static_cast<char*>(data), size);
    Drop(size);
  }

  /*! \brief Push bytes to the back, growing as needed. */
  void Write(const void* data, size_t size) {
    Reserve(size_ + size);
    const char* in = static_cast<const char*>(data);
    size_t tail = (head_ + size_) % buf_.size();
    size_t first = std::min(size, buf_.size() - tail);
    std::memcpy(buf_.data() + tail, in, first);
    std::memcpy(buf_.data(), in + first, size - first);
    size_ += size;
  }

  /*!
   * \brief Hand up to max_nbytes queued bytes to frecv(const void*, size_t) -> consumed,
   *        in one contiguous piece, and drop what it consumed.
   */
  template <typename F>
  size_t ReadWithCallback(F frecv, size_t max_nbytes) {
    size_t n = std::min({max_nbytes, size_, buf_.size() - head_});
    if (n == 0) return 0;
    size_t consumed = frecv(buf_.data() + head_, n);
    Drop(consumed);
    return consumed;
  }

  /*!
   * \brief Let fsend(void*, size_t) -> produced fill up to max_nbytes at the back.
   */
  template <typename F>
  size_t WriteWithCallback(F fsend, size_t max_nbytes) {
    Reserve(size_ + max_nbytes);
    size_t tail = (head_ + size_) % buf_.size();
    size_t n = std::min(max_nbytes, buf_.size() - tail);
    if (tail < head_) n = std::min(n, head_ - tail);
    size_t produced = fsend(buf_.data() + tail, n);
    size_ += produced;
    return produced;
  }

 private:
  static constexpr size_t kInitCapacity = 1024;

  void CopyOut(char* out, size_t n) const {
    size_t first = std::min(n, buf_.size() - head_);
    std::memcpy(out, buf_.data() + head_, first);
    std::memcpy(out + first, buf_.data(), n - first);
  }
  void Drop(size_t n) {
    head_ = (head_ + n) % buf_.size();
    size_ -= n;
    if (size_ == 0) head_ = 0;
  }

  std::vector<char> buf_;
  size_t head_{0};
  size_t size_{0};
};

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_SUPPORT_RING_BUFFER_H_
