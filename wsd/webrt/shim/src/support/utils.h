/*
 * wsd shim: the small string helpers TVM's runtime sources call from
 * src/support/utils.h.
 */
#ifndef WSD_SHIM_SUPPORT_UTILS_H_
#define WSD_SHIM_SUPPORT_UTILS_H_

#include <string>
#include <vector>

namespace tvm {
namespace support {

inline bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline std::vector<std::string> Split(const std::string& s, char delim) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == delim) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

}  // namespace support
}  // namespace tvm

#endif  // WSD_SHIM_SUPPORT_UTILS_H_
