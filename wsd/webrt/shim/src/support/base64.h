/*
 * wsd shim: RFC 4648 base64 (standard alphabet, '=' padding) as streams over
 * another stream. Used by the runtime's Tensor JSON round trip.
 */
#ifndef WSD_SHIM_SUPPORT_BASE64_H_
#define WSD_SHIM_SUPPORT_BASE64_H_

#include <tvm/ffi/error.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <string>

namespace tvm {
namespace support {
namespace base64 {

inline const char* Alphabet() {
  return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}
// Value of a base64 digit, -1 for '=' and -2 for anything else.
inline int DigitValue(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  if (c == '=') return -1;
  return -2;
}

}  // namespace base64

/*! \brief Decodes base64 read from an underlying stream; whitespace is skipped. */
class Base64InStream : public Stream {
 public:
  explicit Base64InStream(Stream* source) : source_(source) {}
  /*! \brief Kept for the runtime's call sites: decoding starts at the current position. */
  void InitPosition() {
    nbuf_ = 0;
    done_ = false;
  }

  using Stream::Read;
  using Stream::Write;

  size_t Read(void* ptr, size_t size) final {
    uint8_t* out = static_cast<uint8_t*>(ptr);
    size_t n = 0;
    while (n < size) {
      if (pos_ == nbuf_ && !Refill()) break;
      out[n++] = buf_[pos_++];
    }
    return n;
  }
  size_t Write(const void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64InStream is read-only";
    return 0;
  }

 private:
  int NextDigitChar() {
    char c;
    while (source_->Read(&c, 1) == 1) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      return static_cast<unsigned char>(c);
    }
    return -1;
  }
  // Decode one 4-character group into up to 3 bytes.
  bool Refill() {
    pos_ = nbuf_ = 0;
    if (done_) return false;
    int vals[4];
    for (int i = 0; i < 4; ++i) {
      int c = NextDigitChar();
      if (c < 0) {
        TVM_FFI_ICHECK_EQ(i, 0) << "base64: input ends inside a 4-character group";
        done_ = true;
        return false;
      }
      vals[i] = base64::DigitValue(c);
      TVM_FFI_ICHECK_NE(vals[i], -2) << "base64: invalid character '" << static_cast<char>(c) << "'";
    }
    TVM_FFI_ICHECK(vals[0] >= 0 && vals[1] >= 0) << "base64: misplaced padding";
    uint32_t bits = (vals[0] << 18) | (vals[1] << 12);
    buf_[nbuf_++] = static_cast<uint8_t>(bits >> 16);
    if (vals[2] >= 0) {
      bits |= vals[2] << 6;
      buf_[nbuf_++] = static_cast<uint8_t>((bits >> 8) & 0xFF);
      if (vals[3] >= 0) {
        bits |= vals[3];
        buf_[nbuf_++] = static_cast<uint8_t>(bits & 0xFF);
      } else {
        done_ = true;
      }
    } else {
      TVM_FFI_ICHECK_EQ(vals[3], -1) << "base64: misplaced padding";
      done_ = true;
    }
    return true;
  }

  Stream* source_;
  uint8_t buf_[3];
  size_t pos_{0}, nbuf_{0};
  bool done_{false};
};

/*! \brief Encodes written bytes as base64 into an underlying stream; call Finish() last. */
class Base64OutStream : public Stream {
 public:
  explicit Base64OutStream(Stream* sink) : sink_(sink) {}

  using Stream::Read;
  using Stream::Write;

  size_t Write(const void* ptr, size_t size) final {
    const uint8_t* in = static_cast<const uint8_t*>(ptr);
    for (size_t i = 0; i < size; ++i) {
      pending_[npending_++] = in[i];
      if (npending_ == 3) EmitGroup();
    }
    return size;
  }
  size_t Read(void*, size_t) final {
    TVM_FFI_THROW(InternalError) << "Base64OutStream is write-only";
    return 0;
  }
  /*! \brief Flush the last partial group with '=' padding. */
  void Finish() {
    if (npending_ != 0) EmitGroup();
  }

 private:
  void EmitGroup() {
    const char* a = base64::Alphabet();
    uint32_t bits = pending_[0] << 16;
    if (npending_ > 1) bits |= pending_[1] << 8;
    if (npending_ > 2) bits |= pending_[2];
    char out[4] = {a[(bits >> 18) & 63], a[(bits >> 12) & 63], '=', '='};
    if (npending_ > 1) out[2] = a[(bits >> 6) & 63];
    if (npending_ > 2) out[3] = a[bits & 63];
    sink_->Write(static_cast<const void*>(out), 4);
    npending_ = 0;
  }

  Stream* sink_;
  uint8_t pending_[3];
  int npending_{0};
};

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_SUPPORT_BASE64_H_
