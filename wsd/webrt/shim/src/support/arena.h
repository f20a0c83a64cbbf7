/*
 * wsd shim: a bump allocator for short-lived RPC scratch memory. Blocks are kept
 * between uses; RecycleAll() makes all of them free again without releasing them.
 */
#ifndef WSD_SHIM_SUPPORT_ARENA_H_
#define WSD_SHIM_SUPPORT_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tvm {
namespace support {

class Arena {
 public:
  /*! \brief Allocate space for `count` objects of T (not constructed), aligned for T. */
  template <typename T>
  T* allocate_(size_t count = 1) {
    static_assert(std::is_trivially_destructible<T>::value, "Arena never runs destructors");
    return static_cast<T*>(Alloc(sizeof(T) * count, alignof(T)));
  }
  void RecycleAll() {
    current_ = 0;
    offset_ = 0;
  }

 private:
  static constexpr size_t kBlockSize = 64 << 10;
  struct Block {
    std::unique_ptr<uint8_t[]> data;
    size_t size;
  };

  void* Alloc(size_t size, size_t align) {
    while (current_ < blocks_.size()) {
      Block& b = blocks_[current_];
      uintptr_t base = reinterpret_cast<uintptr_t>(b.data.get());
      size_t start = ((base + offset_ + align - 1) & ~(uintptr_t(align) - 1)) - base;
      if (start + size <= b.size) {
        offset_ = start + size;
        return b.data.get() + start;
      }
      ++current_;
      offset_ = 0;
    }
    size_t block = std::max(kBlockSize, size + align);
    blocks_.push_back(Block{std::unique_ptr<uint8_t[]>(new uint8_t[block]), block});
    current_ = blocks_.size() - 1;
    offset_ = 0;
    return Alloc(size, align);
  }

  std::vector<Block> blocks_;
  size_t current_{0};
  size_t offset_{0};
};

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_SUPPORT_ARENA_H_
