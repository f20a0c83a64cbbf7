/*
 * wsd shim: the byte stream interface that TVM's runtime sources expect at
 * <tvm/support/io.h>. The apache-tvm wheels do not ship it, so the web runtime
 * build supplies this one. Written for wsd; the byte format is documented in
 * serializer.h and checked against libtvm by tests/webrt.
 */
#ifndef WSD_SHIM_TVM_SUPPORT_IO_H_
#define WSD_SHIM_TVM_SUPPORT_IO_H_

#include <tvm/ffi/endian.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tvm {
namespace support {

/*! \brief Encodes/decodes a value of type T to a Stream; specialised in serializer.h. */
template <typename T, typename Enable = void>
struct Serializer;

namespace detail {
// Plain bytes: trivially copyable and not a pointer (a pointer is never portable).
template <typename T>
constexpr bool kIsPlain = std::is_trivially_copyable<T>::value && !std::is_pointer<T>::value;
// Whether a block of T can move as one memcpy-like transfer.
template <typename T>
constexpr bool kIsRawBlock = kIsPlain<T> && (TVM_FFI_IO_NO_ENDIAN_SWAP || !std::is_arithmetic<T>::value);
}  // namespace detail

/*! \brief A sequential byte source/sink. Subclasses provide raw Read and Write. */
class Stream {
 public:
  virtual ~Stream() = default;
  /*! \return the number of bytes actually read (short on end of data). */
  virtual size_t Read(void* ptr, size_t size) = 0;
  /*! \return the number of bytes written. */
  virtual size_t Write(const void* ptr, size_t size) = 0;

  template <typename T>
  void Write(const T& value) {
    Serializer<T>::Write(this, value);
  }
  template <typename T>
  bool Read(T* out) {
    return Serializer<T>::Read(this, out);
  }
  template <typename T>
  void WriteArray(const T* data, size_t count) {
    if constexpr (detail::kIsRawBlock<T>) {
      if (count != 0) this->Write(static_cast<const void*>(data), count * sizeof(T));
      return;
    }
    for (size_t i = 0; i < count; ++i) this->Write<T>(data[i]);
  }
  template <typename T>
  bool ReadArray(T* data, size_t count) {
    if constexpr (detail::kIsRawBlock<T>) {
      return count == 0 || this->Read(static_cast<void*>(data), count * sizeof(T)) == count * sizeof(T);
    }
    for (size_t i = 0; i < count; ++i) {
      if (!this->Read<T>(data + i)) return false;
    }
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#include <tvm/support/serializer.h>

#endif  // WSD_SHIM_TVM_SUPPORT_IO_H_
