/*
 * wsd shim: IEEE-754 binary format conversions between floating types of any
 * width, named as compiler-rt's generic templates that TVM's sort kernel calls.
 * Rounding is to nearest, ties to even; NaN stays NaN (quiet), infinities and
 * subnormals are kept where the destination can represent them.
 */
#ifndef WSD_SHIM_BUILTIN_FP16_H_
#define WSD_SHIM_BUILTIN_FP16_H_

#include <cstdint>
#include <cstring>

namespace wsd_fp {

// Convert the bit pattern `a` of a float with SRC_SIG mantissa bits and
// (bits - SRC_SIG - 1) exponent bits to one with DST_SIG mantissa bits.
template <typename SrcRep, int SRC_SIG, typename DstRep, int DST_SIG>
DstRep Convert(SrcRep a) {
  constexpr int kSrcBits = sizeof(SrcRep) * 8, kDstBits = sizeof(DstRep) * 8;
  constexpr int kSrcExpBits = kSrcBits - SRC_SIG - 1, kDstExpBits = kDstBits - DST_SIG - 1;
  constexpr int kSrcBias = (1 << (kSrcExpBits - 1)) - 1, kDstBias = (1 << (kDstExpBits - 1)) - 1;
  constexpr int kSrcExpMax = (1 << kSrcExpBits) - 1, kDstExpMax = (1 << kDstExpBits) - 1;
  using Wide = uint64_t;

  const Wide sign = (Wide(a) >> (kSrcBits - 1)) & 1;
  const int exp = int((Wide(a) >> SRC_SIG) & kSrcExpMax);
  Wide sig = Wide(a) & ((Wide(1) << SRC_SIG) - 1);
  const Wide dst_sign = sign << (kDstBits - 1);

  if (exp == kSrcExpMax) {  // inf or NaN
    Wide payload = 0;
    if (sig != 0) {
      payload = (DST_SIG >= SRC_SIG) ? (sig << (DST_SIG - SRC_SIG)) : (sig >> (SRC_SIG - DST_SIG));
      payload |= Wide(1) << (DST_SIG - 1);  // quiet NaN
    }
    return DstRep(dst_sign | (Wide(kDstExpMax) << DST_SIG) | payload);
  }
  if (exp == 0 && sig == 0) return DstRep(dst_sign);

  // Normalise to value = 1.m * 2^e with m having SRC_SIG bits.
  int e = exp - kSrcBias;
  if (exp == 0) {
    e = 1 - kSrcBias;
    while (!(sig & (Wide(1) << SRC_SIG))) {
      sig <<= 1;
      --e;
    }
    sig &= (Wide(1) << SRC_SIG) - 1;
  }
  Wide full = sig | (Wide(1) << SRC_SIG);  // SRC_SIG+1 significant bits
  int dexp = e + kDstBias;
  // Bits to drop: from SRC_SIG fraction to DST_SIG fraction, more if subnormal in dst.
  int shift = SRC_SIG - DST_SIG;
  if (dexp <= 0) shift += 1 - dexp, dexp = 0;
  Wide mant;
  if (shift <= 0) {
    mant = full << (-shift);
  } else if (shift > 63) {
    mant = 0;
  } else {
    Wide half = Wide(1) << (shift - 1);
    Wide rem = full & ((Wide(1) << shift) - 1);
    mant = full >> shift;
    if (rem > half || (rem == half && (mant & 1))) ++mant;
  }
  // mant holds the implicit bit when normal; rounding may carry into the exponent.
  Wide bits;
  if (dexp == 0) {
    bits = mant;  // subnormal, or rounded up into the smallest normal (still correct)
  } else {
    if (mant >> (DST_SIG + 1)) {
      mant >>= 1;
      ++dexp;
    }
    if (dexp >= kDstExpMax) return DstRep(dst_sign | (Wide(kDstExpMax) << DST_SIG));
    bits = (Wide(dexp) << DST_SIG) | (mant & ((Wide(1) << DST_SIG) - 1));
  }
  return DstRep(dst_sign | bits);
}

}  // namespace wsd_fp

// compiler-rt spelling: from a source representation to a destination float value.
template <typename SRC_T, typename SRC_REP_T, int SRC_SIG_BITS, typename DST_T, typename DST_REP_T,
          int DST_SIG_BITS>
inline DST_T __extendXfYf2__(SRC_REP_T a) {
  DST_REP_T bits = wsd_fp::Convert<SRC_REP_T, SRC_SIG_BITS, DST_REP_T, DST_SIG_BITS>(a);
  DST_T out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// compiler-rt spelling: from a source float value to a destination representation.
template <typename SRC_T, typename SRC_REP_T, int SRC_SIG_BITS, typename DST_T, typename DST_REP_T,
          int DST_SIG_BITS>
inline DST_REP_T __truncXfYf2__(SRC_T a) {
  SRC_REP_T bits;
  std::memcpy(&bits, &a, sizeof(bits));
  return wsd_fp::Convert<SRC_REP_T, SRC_SIG_BITS, DST_REP_T, DST_SIG_BITS>(bits);
}

#endif  // WSD_SHIM_BUILTIN_FP16_H_
