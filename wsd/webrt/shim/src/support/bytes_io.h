/*
 * wsd shim: in-memory streams over a byte buffer (TVM's src/support/bytes_io.h is
 * missing from the wheels). BytesInStream views bytes it does not own: the
 * caller keeps the buffer alive while reading, as every TVM call site does.
 */
#ifndef WSD_SHIM_SUPPORT_BYTES_IO_H_
#define WSD_SHIM_SUPPORT_BYTES_IO_H_

#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

class BytesInStream : public Stream {
 public:
  BytesInStream(const void* data, size_t size)
      : data_(static_cast<const char*>(data)), size_(size) {}
  explicit BytesInStream(const std::string& s) : BytesInStream(s.data(), s.size()) {}
  explicit BytesInStream(const ffi::Bytes& b) : BytesInStream(b.data(), b.size()) {}
  explicit BytesInStream(const ffi::String& s) : BytesInStream(s.data(), s.size()) {}

  using Stream::Read;
  using Stream::Write;

  size_t Read(void* ptr, size_t size) final {
    size_t n = std::min(size, size_ - pos_);
    if (n != 0) std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "BytesInStream is read-only";
    return 0;
  }
  void Seek(size_t pos) { pos_ = std::min(pos, size_); }
  size_t Tell() const { return pos_; }

 private:
  const char* data_;
  size_t size_;
  size_t pos_{0};
};

/*! \brief Appends everything written to a caller-owned std::string. */
class BytesOutStream : public Stream {
 public:
  explicit BytesOutStream(std::string* out) : out_(out) {}

  using Stream::Read;
  using Stream::Write;

  size_t Write(const void* ptr, size_t size) final {
    out_->append(static_cast<const char*>(ptr), size);
    return size;
  }
  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "BytesOutStream is write-only";
    return 0;
  }
  size_t Tell() const { return out_->size(); }

 private:
  std::string* out_;
};

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_SUPPORT_BYTES_IO_H_
