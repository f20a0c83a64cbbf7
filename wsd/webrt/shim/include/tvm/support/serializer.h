/*
 * wsd shim: the value encodings used by TVM's runtime for executables, tensors
 * and device modules. Format (all integers little-endian, no padding):
 *   - arithmetic, enum and plain C structs (DLDataType, DLDevice): their raw bytes
 *   - strings (std::string, ffi::String, ffi::Bytes): uint64 length, then the bytes
 *   - sequences (std::vector, ffi::Array): uint64 count, then each element
 *   - pairs: first, then second
 *   - maps (std::map, std::unordered_map, ffi::Map): uint64 count, then key/value pairs
 * The compiler side (libtvm) writes this format; the wasm runtime reads it.
 */
#ifndef WSD_SHIM_TVM_SUPPORT_SERIALIZER_H_
#define WSD_SHIM_TVM_SUPPORT_SERIALIZER_H_

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {
namespace detail {

inline bool ReadExact(Stream* strm, void* ptr, size_t size) {
  return size == 0 || strm->Read(ptr, size) == size;
}

// Length prefixes are uint64; refuse counts that cannot fit in memory.
inline bool ReadCount(Stream* strm, size_t* count) {
  uint64_t n = 0;
  if (!ReadExact(strm, &n, sizeof(n))) return false;
  if (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(&n, sizeof(n), 1);
  if (n > static_cast<uint64_t>(SIZE_MAX)) return false;
  *count = static_cast<size_t>(n);
  return true;
}

inline void WriteCount(Stream* strm, size_t count) {
  uint64_t n = static_cast<uint64_t>(count);
  if (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(&n, sizeof(n), 1);
  strm->Write(static_cast<const void*>(&n), sizeof(n));
}

template <typename T>
void SwapIfArithmetic(T* data, size_t count) {
  if constexpr (std::is_arithmetic<T>::value) {
    if (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(data, sizeof(T), count);
  }
}

// Byte-like containers: a length, then the raw characters.
template <typename Str>
struct StringLike {
  static void Write(Stream* strm, const Str& s) {
    WriteCount(strm, s.size());
    if (s.size() != 0) strm->Write(static_cast<const void*>(s.data()), s.size());
  }
};

// Read a sequence of n elements into a std::vector, growing in bounded chunks so a
// corrupted count fails on the short read instead of allocating the claimed size.
template <typename T>
bool ReadVectorBody(Stream* strm, size_t n, std::vector<T>* out) {
  out->clear();
  constexpr size_t kChunk = 1 << 16;
  while (out->size() < n) {
    size_t take = std::min(kChunk, n - out->size());
    size_t start = out->size();
    out->resize(start + take);
    if constexpr (kIsRawBlock<T>) {
      if (!ReadExact(strm, out->data() + start, take * sizeof(T))) return false;
    } else {
      for (size_t i = start; i < start + take; ++i) {
        if (!Serializer<T>::Read(strm, &(*out)[i])) return false;
      }
    }
  }
  return true;
}

}  // namespace detail

/*! \brief Plain values: their bytes as they lie in memory (little-endian). */
template <typename T>
struct Serializer<T, std::enable_if_t<detail::kIsPlain<T>>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const T& value) {
    T copy = value;
    detail::SwapIfArithmetic(&copy, 1);
    strm->Write(static_cast<const void*>(&copy), sizeof(T));
  }
  static bool Read(Stream* strm, T* out) {
    if (!detail::ReadExact(strm, out, sizeof(T))) return false;
    detail::SwapIfArithmetic(out, 1);
    return true;
  }
};

template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::string& s) { detail::StringLike<std::string>::Write(strm, s); }
  static bool Read(Stream* strm, std::string* out) {
    size_t n;
    if (!detail::ReadCount(strm, &n)) return false;
    out->clear();
    // Bounded growth, as in ReadVectorBody.
    constexpr size_t kChunk = 1 << 20;
    while (out->size() < n) {
      size_t start = out->size();
      size_t take = std::min(kChunk, n - start);
      out->resize(start + take);
      if (!detail::ReadExact(strm, &(*out)[start], take)) return false;
    }
    return true;
  }
};

template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::String& s) { detail::StringLike<ffi::String>::Write(strm, s); }
  static bool Read(Stream* strm, ffi::String* out) {
    std::string tmp;
    if (!Serializer<std::string>::Read(strm, &tmp)) return false;
    *out = ffi::String(std::move(tmp));
    return true;
  }
};

template <typename T, typename Alloc>
struct Serializer<std::vector<T, Alloc>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::vector<T, Alloc>& vec) {
    detail::WriteCount(strm, vec.size());
    if constexpr (detail::kIsRawBlock<T>) {
      if (!vec.empty()) strm->Write(static_cast<const void*>(vec.data()), vec.size() * sizeof(T));
    } else {
      for (const T& item : vec) Serializer<T>::Write(strm, item);
    }
  }
  static bool Read(Stream* strm, std::vector<T, Alloc>* out) {
    size_t n;
    if (!detail::ReadCount(strm, &n)) return false;
    std::vector<T> tmp;
    if (!detail::ReadVectorBody(strm, n, &tmp)) return false;
    out->assign(std::make_move_iterator(tmp.begin()), std::make_move_iterator(tmp.end()));
    return true;
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Array<T>& arr) {
    detail::WriteCount(strm, arr.size());
    for (const T& item : arr) Serializer<T>::Write(strm, item);
  }
  static bool Read(Stream* strm, ffi::Array<T>* out) {
    size_t n;
    if (!detail::ReadCount(strm, &n)) return false;
    ffi::Array<T> result;
    for (size_t i = 0; i < n; ++i) {
      T item;
      if (!Serializer<T>::Read(strm, &item)) return false;
      result.push_back(std::move(item));
    }
    *out = std::move(result);
    return true;
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::pair<A, B>& p) {
    Serializer<A>::Write(strm, p.first);
    Serializer<B>::Write(strm, p.second);
  }
  static bool Read(Stream* strm, std::pair<A, B>* out) {
    return Serializer<A>::Read(strm, &out->first) && Serializer<B>::Read(strm, &out->second);
  }
};

namespace detail {
// Shared by the std:: maps: count, then key/value pairs in iteration order.
template <typename MapT>
struct StdMap {
  using K = typename MapT::key_type;
  using V = typename MapT::mapped_type;
  static void Write(Stream* strm, const MapT& m) {
    WriteCount(strm, m.size());
    for (const auto& kv : m) {
      Serializer<K>::Write(strm, kv.first);
      Serializer<V>::Write(strm, kv.second);
    }
  }
  static bool Read(Stream* strm, MapT* out) {
    size_t n;
    if (!ReadCount(strm, &n)) return false;
    out->clear();
    for (size_t i = 0; i < n; ++i) {
      K key;
      V value;
      if (!Serializer<K>::Read(strm, &key) || !Serializer<V>::Read(strm, &value)) return false;
      (*out)[std::move(key)] = std::move(value);
    }
    return true;
  }
};
}  // namespace detail

template <typename K, typename V, typename... Rest>
struct Serializer<std::map<K, V, Rest...>> : detail::StdMap<std::map<K, V, Rest...>> {
  static constexpr bool enabled = true;
};

template <typename K, typename V, typename... Rest>
struct Serializer<std::unordered_map<K, V, Rest...>>
    : detail::StdMap<std::unordered_map<K, V, Rest...>> {
  static constexpr bool enabled = true;
};

template <typename K, typename V>
struct Serializer<ffi::Map<K, V>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Map<K, V>& m) {
    detail::WriteCount(strm, m.size());
    for (const auto& kv : m) {
      Serializer<K>::Write(strm, kv.first);
      Serializer<V>::Write(strm, kv.second);
    }
  }
  static bool Read(Stream* strm, ffi::Map<K, V>* out) {
    size_t n;
    if (!detail::ReadCount(strm, &n)) return false;
    ffi::Map<K, V> result;
    for (size_t i = 0; i < n; ++i) {
      K key;
      V value;
      if (!Serializer<K>::Read(strm, &key) || !Serializer<V>::Read(strm, &value)) return false;
      result.Set(std::move(key), std::move(value));
    }
    *out = std::move(result);
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_TVM_SUPPORT_SERIALIZER_H_
