// Hidden-state codec (see tandem/codec.h for the formats and the wire layout).
#include "tandem/codec.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "codec/float16.h"

namespace tandem {
namespace {

using codec_internal::Bf16ToFloat;
using codec_internal::BitsToFloat;
using codec_internal::FloatBits;
using codec_internal::FloatToBf16;
using codec_internal::FloatToHalf;
using codec_internal::HalfToFloat;

constexpr char kMagic[4] = {'T', 'D', 'H', '1'};
constexpr int32_t kDefaultZstdLevel = 3;
constexpr int32_t kMaxZstdLevel = 19;
constexpr uint64_t kMaxU32 = 0xffffffffu;

absl::Status CodecError(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("codec: ", message));
}

// --- little-endian helpers ---------------------------------------------------

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// Byte-order helpers: plain memcpy on little-endian hosts (which vectorises
// well), explicit bytes otherwise.
void StoreU16(char* p, uint16_t v) {
  if (!kLittleEndian) v = static_cast<uint16_t>((v >> 8) | (v << 8));
  std::memcpy(p, &v, 2);
}
void StoreU32(char* p, uint32_t v) {
  if (!kLittleEndian) v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
uint16_t LoadU16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return kLittleEndian ? v : static_cast<uint16_t>((v >> 8) | (v << 8));
}
uint32_t LoadU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return kLittleEndian ? v : __builtin_bswap32(v);
}

// n 32-bit words between host order and little-endian bytes.
void StoreF32Array(char* out, const float* in, size_t n) {
  if (n == 0) return;  // `in` may be null
  if (kLittleEndian) {
    std::memcpy(out, in, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) StoreU32(out + 4 * i, FloatBits(in[i]));
  }
}

// --- sizes ---------------------------------------------------------------------

bool KnownFormat(uint8_t f) { return f >= 1 && f <= 5; }

// Overflow-checked a*b and a+b on uint64.
bool MulU64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool AddU64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

uint64_t NumGroups(uint64_t dim, uint64_t group) { return (dim + group - 1) / group; }

// Raw (pre-zstd) payload bytes for a valid spec; false on overflow.
bool RawPayloadBytes(uint64_t rows, uint64_t dim, const CodecSpec& spec, uint64_t* out) {
  uint64_t n = 0;
  if (!MulU64(rows, dim, &n)) return false;
  switch (spec.format) {
    case HiddenFormat::kFp32:
      return MulU64(n, 4, out);
    case HiddenFormat::kFp16:
    case HiddenFormat::kBf16:
      return MulU64(n, 2, out);
    case HiddenFormat::kInt8: {
      uint64_t scales = 0;
      return MulU64(rows, 4, &scales) && AddU64(scales, n, out);
    }
    case HiddenFormat::kInt4: {
      uint64_t groups = 0, scales = 0, packed = 0;
      const uint64_t group = static_cast<uint64_t>(spec.group_size);
      return MulU64(rows, NumGroups(dim, group), &groups) && MulU64(groups, 2, &scales) &&
             MulU64(rows, (dim + 1) / 2, &packed) && AddU64(scales, packed, out);
    }
  }
  return false;
}

// --- rounding helpers ----------------------------------------------------------

// Round-to-nearest-even for |x| <= 2^22 without libm (vectorisable).
inline float RoundNearest(float x) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (x + kShift) - kShift;
}

// --- encoders (payload only) -----------------------------------------------------

// The element loops below take __restrict pointers in small out-of-line functions
// so that GCC vectorises them (char pointers may alias anything otherwise, and
// inlined into DecodeHidden the loops stay scalar).
#define TANDEM_CODEC_LOOP __attribute__((noinline))
TANDEM_CODEC_LOOP void EncodeFp32(const float* __restrict x, uint64_t n, char* __restrict out) {
  StoreF32Array(out, x, n);
}

TANDEM_CODEC_LOOP void EncodeFp16(const float* __restrict x, uint64_t n, char* __restrict out) {
  for (uint64_t i = 0; i < n; ++i) StoreU16(out + 2 * i, FloatToHalf(x[i]));
}

TANDEM_CODEC_LOOP void EncodeBf16(const float* __restrict x, uint64_t n, char* __restrict out) {
  for (uint64_t i = 0; i < n; ++i) StoreU16(out + 2 * i, FloatToBf16(x[i]));
}

TANDEM_CODEC_LOOP void DecodeFp32(const char* __restrict in, uint64_t n, float* __restrict out) {
  if (kLittleEndian) {
    // A plain loop rather than memcpy: glibc's `rep movsb` memcpy is ~10x slower
    // on this AMD CPU for some relative alignments of source and destination.
    for (uint64_t i = 0; i < n; ++i) {
      uint32_t b;
      std::memcpy(&b, in + 4 * i, 4);
      out[i] = BitsToFloat(b);
    }
  } else {
    for (uint64_t i = 0; i < n; ++i) out[i] = BitsToFloat(LoadU32(in + 4 * i));
  }
}

TANDEM_CODEC_LOOP void DecodeFp16(const char* __restrict in, uint64_t n, float* __restrict out) {
  for (uint64_t i = 0; i < n; ++i) out[i] = HalfToFloat(LoadU16(in + 2 * i));
}

TANDEM_CODEC_LOOP void DecodeBf16(const char* __restrict in, uint64_t n, float* __restrict out) {
  for (uint64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(LoadU16(in + 2 * i));
}

// The largest |x| of x[0, n) as float bits: for non-negative floats the integer
// order is the float order, so one vectorisable integer max also detects
// non-finite values (result >= 0x7f800000).
uint32_t AbsMaxBits(const float* x, uint64_t n) {
  uint32_t m = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    b &= 0x7fffffffu;
    m = b > m ? b : m;
  }
  return m;
}

absl::Status NonFiniteError(const float* row, uint64_t dim, uint64_t r, const char* format) {
  uint64_t col = 0;
  while (col < dim && std::isfinite(row[col])) ++col;
  return CodecError(absl::StrCat(format, " cannot encode a non-finite value (row ", r,
                                 ", column ", col, ")"));
}

// q[i] = clamp(round(x[i] / scale), -qmax, qmax) + offset; scale 0 -> offset.
void Quantize(const float* x, uint64_t n, float scale, float qmax, int offset, int8_t* q) {
  if (!(scale > 0.0f)) {
    std::memset(q, offset, n);
    return;
  }
  const double inv_d = 1.0 / static_cast<double>(scale);
  if (inv_d < 1e37) {
    const float inv = static_cast<float>(inv_d);
    for (uint64_t i = 0; i < n; ++i) {
      const float v = std::min(qmax, std::max(-qmax, RoundNearest(x[i] * inv)));
      q[i] = static_cast<int8_t>(static_cast<int>(v) + offset);
    }
  } else {  // subnormal scale: the inverse does not fit a float
    for (uint64_t i = 0; i < n; ++i) {
      const double v = std::min<double>(qmax, std::max<double>(-qmax, std::nearbyint(x[i] * inv_d)));
      q[i] = static_cast<int8_t>(static_cast<int>(v) + offset);
    }
  }
}

absl::Status EncodeInt8(const float* x, uint64_t rows, uint64_t dim, char* out) {
  char* scales = out;
  auto* q = reinterpret_cast<int8_t*>(out + 4 * rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    const uint32_t absmax = AbsMaxBits(row, dim);
    if (absmax >= 0x7f800000u) return NonFiniteError(row, dim, r, "int8");
    const float scale = BitsToFloat(absmax) / 127.0f;
    StoreU32(scales + 4 * r, FloatBits(scale));
    Quantize(row, dim, scale, 127.0f, 0, q + r * dim);
  }
  return absl::OkStatus();
}

absl::Status EncodeInt4(const float* x, uint64_t rows, uint64_t dim, uint64_t group, char* out) {
  const uint64_t groups = NumGroups(dim, group);
  const uint64_t row_bytes = (dim + 1) / 2;
  char* scales = out;
  auto* packed = reinterpret_cast<uint8_t*>(out + 2 * rows * groups);
  std::vector<int8_t> codes(dim + 1);  // q + 8 in [1, 15]; one spare zero for odd dims
  for (uint64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    if (AbsMaxBits(row, dim) >= 0x7f800000u) return NonFiniteError(row, dim, r, "int4");
    for (uint64_t g = 0; g < groups; ++g) {
      const uint64_t begin = g * group;
      const uint64_t len = std::min(group, dim - begin);
      const float absmax = BitsToFloat(AbsMaxBits(row + begin, len));
      const uint16_t scale_bits = FloatToHalf(absmax / 7.0f);
      const float scale = HalfToFloat(scale_bits);
      if (std::isinf(scale)) {
        return CodecError(absl::StrCat("int4 group absmax ", absmax, " (row ", r, ", group ", g,
                                       ") exceeds the fp16 scale range"));
      }
      StoreU16(scales + 2 * (r * groups + g), scale_bits);
      Quantize(row + begin, len, scale, 7.0f, 8, codes.data() + begin);
    }
    codes[dim] = 0;  // the padding nibble of an odd row
    uint8_t* pr = packed + r * row_bytes;
    for (uint64_t j = 0; j < row_bytes; ++j) {
      pr[j] = static_cast<uint8_t>(static_cast<uint8_t>(codes[2 * j]) |
                                   (static_cast<uint8_t>(codes[2 * j + 1]) << 4));
    }
  }
  return absl::OkStatus();
}

// --- decoders (payload only; sizes already checked) ------------------------------

TANDEM_CODEC_LOOP void DequantizeInt8(const int8_t* __restrict q, uint64_t n, float scale,
                                      float* __restrict out) {
  for (uint64_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * scale;
}

absl::Status DecodeInt8(const char* in, uint64_t rows, uint64_t dim, float* out) {
  const auto* q = reinterpret_cast<const int8_t*>(in + 4 * rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const uint32_t bits = LoadU32(in + 4 * r);
    const float scale = BitsToFloat(bits);
    if (bits >= 0x7f800000u) {  // negative (sign bit, including -0), inf or NaN
      return CodecError(absl::StrCat("int8 row ", r, " has an invalid scale ", scale));
    }
    DequantizeInt8(q + r * dim, dim, scale, out + r * dim);
  }
  return absl::OkStatus();
}

// Nibbles decode as nibble - 8 (the encoder writes 1..15; 0 decodes as -8).
absl::Status DecodeInt4(const char* in, uint64_t rows, uint64_t dim, uint64_t group, float* out) {
  const uint64_t groups = NumGroups(dim, group);
  const uint64_t row_bytes = (dim + 1) / 2;
  const auto* packed = reinterpret_cast<const uint8_t*>(in + 2 * rows * groups);
  for (uint64_t r = 0; r < rows; ++r) {
    const uint8_t* pr = packed + r * row_bytes;
    float* o = out + r * dim;
    if ((dim & 1) && (pr[row_bytes - 1] >> 4) != 0) {
      return CodecError(absl::StrCat("int4 row ", r, " has a non-zero padding nibble"));
    }
    for (uint64_t g = 0; g < groups; ++g) {
      const uint16_t bits = LoadU16(in + 2 * (r * groups + g));
      const float scale = HalfToFloat(bits);
      if (bits >= 0x7c00u) {  // negative (sign bit, including -0), inf or NaN
        return CodecError(
            absl::StrCat("int4 row ", r, " group ", g, " has an invalid scale ", scale));
      }
      // Groups are even-sized, so each starts on a byte; only a row's last
      // group can end on a half byte (odd dim).
      const uint64_t begin = g * group;
      const uint64_t end = std::min(dim, begin + group);
      const uint8_t* p = pr + begin / 2;
      float* og = o + begin;
      const uint64_t pairs = (end - begin) / 2;
      for (uint64_t j = 0; j < pairs; ++j) {
        og[2 * j] = static_cast<float>(static_cast<int>(p[j] & 0xfu) - 8) * scale;
        og[2 * j + 1] = static_cast<float>(static_cast<int>(p[j] >> 4) - 8) * scale;
      }
      if ((end - begin) & 1) {
        og[2 * pairs] = static_cast<float>(static_cast<int>(p[pairs] & 0xfu) - 8) * scale;
      }
    }
  }
  return absl::OkStatus();
}

// --- zstd contexts (one per thread, reused) ----------------------------------------

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx(ZSTD_createCCtx());
  return ctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx(ZSTD_createDCtx());
  return ctx.get();
}

}  // namespace

// --- spec --------------------------------------------------------------------------

absl::Status CodecSpec::Validate() const {
  if (!KnownFormat(static_cast<uint8_t>(format))) {
    return CodecError(absl::StrCat("unknown hidden format ", static_cast<int>(format)));
  }
  if (format == HiddenFormat::kInt4 && group_size != 32 && group_size != 64) {
    return CodecError(absl::StrCat("int4 group size must be 32 or 64, got ", group_size));
  }
  if (zstd_level < 0 || zstd_level > kMaxZstdLevel) {
    return CodecError(absl::StrCat("zstd level must be 0 (off) or 1..19, got ", zstd_level));
  }
  return absl::OkStatus();
}

bool operator==(const CodecSpec& a, const CodecSpec& b) {
  if (a.format != b.format || a.zstd_level != b.zstd_level) return false;
  return a.format != HiddenFormat::kInt4 || a.group_size == b.group_size;
}

const char* HiddenFormatName(HiddenFormat f) {
  switch (f) {
    case HiddenFormat::kFp32: return "fp32";
    case HiddenFormat::kFp16: return "fp16";
    case HiddenFormat::kBf16: return "bf16";
    case HiddenFormat::kInt8: return "int8";
    case HiddenFormat::kInt4: return "int4";
  }
  return "unknown";
}

absl::StatusOr<CodecSpec> ParseCodecSpec(absl::string_view text) {
  const auto bad = [&](absl::string_view why) {
    return CodecError(absl::StrCat("bad codec spec \"", text, "\": ", why,
                                   " (expected fp32|fp16|bf16|int8|int4|int4-g64, optionally "
                                   "+zstd or +zstdN with N in 1..19)"));
  };
  CodecSpec spec;
  absl::string_view base = text;
  absl::string_view suffix;
  const size_t plus = text.find('+');
  if (plus != absl::string_view::npos) {
    base = text.substr(0, plus);
    suffix = text.substr(plus + 1);
  }
  if (base == "fp32") {
    spec.format = HiddenFormat::kFp32;
  } else if (base == "fp16") {
    spec.format = HiddenFormat::kFp16;
  } else if (base == "bf16") {
    spec.format = HiddenFormat::kBf16;
  } else if (base == "int8") {
    spec.format = HiddenFormat::kInt8;
  } else if (base == "int4" || base == "int4-g32") {
    spec.format = HiddenFormat::kInt4;
    spec.group_size = 32;
  } else if (base == "int4-g64") {
    spec.format = HiddenFormat::kInt4;
    spec.group_size = 64;
  } else {
    return bad("unknown format");
  }
  if (plus != absl::string_view::npos) {
    if (suffix.substr(0, 4) != "zstd") return bad("unknown suffix");
    const absl::string_view digits = suffix.substr(4);
    if (digits.empty()) {
      spec.zstd_level = kDefaultZstdLevel;
    } else {
      int level = 0;
      const bool all_digits = std::all_of(digits.begin(), digits.end(),
                                          [](char c) { return c >= '0' && c <= '9'; });
      if (!all_digits || digits.size() > 2 || digits[0] == '0' ||
          !absl::SimpleAtoi(digits, &level) || level < 1 || level > kMaxZstdLevel) {
        return bad("zstd level must be 1..19");
      }
      spec.zstd_level = level;
    }
  }
  return spec;
}

std::string CodecSpecName(const CodecSpec& spec) {
  std::string name = HiddenFormatName(spec.format);
  if (spec.format == HiddenFormat::kInt4 && spec.group_size != 32) {
    absl::StrAppend(&name, "-g", spec.group_size);
  }
  if (spec.zstd_level == kDefaultZstdLevel) {
    absl::StrAppend(&name, "+zstd");
  } else if (spec.zstd_level != 0) {
    absl::StrAppend(&name, "+zstd", spec.zstd_level);
  }
  return name;
}

// --- encode --------------------------------------------------------------------------

int64_t EncodedSizeUncompressed(int64_t rows, int64_t dim, const CodecSpec& spec) {
  if (!spec.Validate().ok() || rows < 0 || dim < 1 || static_cast<uint64_t>(rows) > kMaxU32 ||
      static_cast<uint64_t>(dim) > kMaxU32) {
    return -1;
  }
  uint64_t raw = 0;
  if (!RawPayloadBytes(rows, dim, spec, &raw) || raw > kMaxU32) return -1;
  return kHiddenHeaderBytes + static_cast<int64_t>(raw);
}

absl::StatusOr<std::string> EncodeHidden(const float* data, int64_t rows, int64_t dim,
                                         const CodecSpec& spec) {
  if (auto s = spec.Validate(); !s.ok()) return s;
  if (rows < 0 || dim < 1 || static_cast<uint64_t>(rows) > kMaxU32 ||
      static_cast<uint64_t>(dim) > kMaxU32) {
    return CodecError(absl::StrCat("cannot encode shape [", rows, ", ", dim,
                                   "] (need 0 <= rows < 2^32, 1 <= dim < 2^32)"));
  }
  uint64_t raw = 0;
  if (!RawPayloadBytes(rows, dim, spec, &raw) || raw > kMaxU32) {
    return CodecError(absl::StrCat("payload of [", rows, ", ", dim, "] in ",
                                   CodecSpecName(spec), " exceeds 4 GiB"));
  }
  const uint64_t r = static_cast<uint64_t>(rows), d = static_cast<uint64_t>(dim);
  if (data == nullptr && r * d > 0) return CodecError("null data");

  const bool compress = spec.zstd_level > 0;
  std::string out(kHiddenHeaderBytes + (compress ? 0 : raw), '\0');
  std::string scratch;
  if (compress) scratch.resize(raw);
  char* payload = compress ? scratch.data() : out.data() + kHiddenHeaderBytes;

  switch (spec.format) {
    case HiddenFormat::kFp32: EncodeFp32(data, r * d, payload); break;
    case HiddenFormat::kFp16: EncodeFp16(data, r * d, payload); break;
    case HiddenFormat::kBf16: EncodeBf16(data, r * d, payload); break;
    case HiddenFormat::kInt8:
      if (auto s = EncodeInt8(data, r, d, payload); !s.ok()) return s;
      break;
    case HiddenFormat::kInt4:
      if (auto s = EncodeInt4(data, r, d, static_cast<uint64_t>(spec.group_size), payload);
          !s.ok()) {
        return s;
      }
      break;
  }

  uint64_t stored = raw;
  int compressed_level = spec.zstd_level;
  if (compress) {
    const size_t bound = ZSTD_compressBound(raw);
    out.resize(kHiddenHeaderBytes + bound);
    ZSTD_CCtx* cctx = ThreadCCtx();
    if (cctx == nullptr) return absl::ResourceExhaustedError("codec: ZSTD_createCCtx failed");
    const size_t n = ZSTD_compressCCtx(cctx, out.data() + kHiddenHeaderBytes, bound,
                                       scratch.data(), raw, spec.zstd_level);
    if (ZSTD_isError(n)) {
      return absl::InternalError(absl::StrCat("codec: zstd: ", ZSTD_getErrorName(n)));
    }
    if (n > kMaxU32) return CodecError("compressed payload exceeds 4 GiB");
    if (n < raw) {
      stored = n;
      out.resize(kHiddenHeaderBytes + n);
    } else {
      // zstd did not pay (a single row: the frame overhead exceeds the gain):
      // store the payload raw and say so in the header.
      out.resize(kHiddenHeaderBytes + raw);
      std::memcpy(out.data() + kHiddenHeaderBytes, scratch.data(), raw);
      compressed_level = 0;
    }
  }

  char* h = out.data();
  std::memcpy(h, kMagic, 4);
  h[4] = static_cast<char>(kHiddenCodecVersion);
  h[5] = static_cast<char>(spec.format);
  h[6] = static_cast<char>(spec.format == HiddenFormat::kInt4 ? spec.group_size : 0);
  h[7] = static_cast<char>(compressed_level);
  StoreU32(h + 8, static_cast<uint32_t>(r));
  StoreU32(h + 12, static_cast<uint32_t>(d));
  StoreU32(h + 16, static_cast<uint32_t>(stored));
  StoreU32(h + 20, static_cast<uint32_t>(raw));
  return out;
}

// --- decode --------------------------------------------------------------------------

absl::StatusOr<DecodedHidden> DecodeHidden(absl::string_view buffer, int64_t expected_dim,
                                           int64_t max_rows) {
  if (expected_dim < 0) return CodecError("expected_dim must be >= 0");
  if (max_rows < 0) return CodecError("max_rows must be >= 0");
  if (buffer.size() < static_cast<size_t>(kHiddenHeaderBytes)) {
    return CodecError(absl::StrCat("buffer of ", buffer.size(), " bytes is shorter than the ",
                                   kHiddenHeaderBytes, "-byte header"));
  }
  const char* h = buffer.data();
  if (std::memcmp(h, kMagic, 4) != 0) return CodecError("bad magic (not a hidden-state buffer)");
  const uint8_t version = static_cast<uint8_t>(h[4]);
  if (version != kHiddenCodecVersion) {
    return CodecError(absl::StrCat("unsupported codec version ", version, " (this build reads ",
                                   kHiddenCodecVersion, ")"));
  }
  const uint8_t format = static_cast<uint8_t>(h[5]);
  if (!KnownFormat(format)) return CodecError(absl::StrCat("unknown format ", format));
  const uint8_t group = static_cast<uint8_t>(h[6]);
  const uint8_t level = static_cast<uint8_t>(h[7]);
  DecodedHidden result;
  result.spec.format = static_cast<HiddenFormat>(format);
  if (result.spec.format == HiddenFormat::kInt4) {
    if (group != 32 && group != 64) {
      return CodecError(absl::StrCat("int4 group size ", group, " is not 32 or 64"));
    }
    result.spec.group_size = group;
  } else if (group != 0) {
    return CodecError(absl::StrCat("group size ", group, " given for ",
                                   HiddenFormatName(result.spec.format)));
  }
  if (level > kMaxZstdLevel) return CodecError(absl::StrCat("bad zstd level ", level));
  result.spec.zstd_level = level;

  const uint64_t rows = LoadU32(h + 8);
  const uint64_t dim = LoadU32(h + 12);
  const uint64_t stored = LoadU32(h + 16);
  const uint64_t raw = LoadU32(h + 20);
  if (dim == 0) return CodecError("dim is 0");
  if (expected_dim != 0 && dim != static_cast<uint64_t>(expected_dim)) {
    return CodecError(absl::StrCat("dim ", dim, " does not match the expected ", expected_dim));
  }
  if (rows > static_cast<uint64_t>(max_rows)) {
    return CodecError(absl::StrCat(rows, " rows exceed the limit of ", max_rows));
  }
  uint64_t values = 0, want_raw = 0;
  if (!MulU64(rows, dim, &values) || !RawPayloadBytes(rows, dim, result.spec, &want_raw) ||
      values > std::numeric_limits<size_t>::max() / sizeof(float)) {
    return CodecError(absl::StrCat("shape [", rows, ", ", dim, "] overflows"));
  }
  if (raw != want_raw) {
    return CodecError(absl::StrCat("header says ", raw, " raw payload bytes but [", rows, ", ",
                                   dim, "] in ", CodecSpecName(result.spec), " needs ",
                                   want_raw));
  }
  const uint64_t available = buffer.size() - kHiddenHeaderBytes;
  if (stored != available) {
    return CodecError(absl::StrCat("header says ", stored, " payload bytes but ", available,
                                   available < stored ? " are present (truncated)"
                                                      : " follow (trailing bytes)"));
  }
  const char* payload = h + kHiddenHeaderBytes;
  std::string decompressed;
  if (level == 0) {
    if (stored != raw) {
      return CodecError(absl::StrCat("uncompressed payload of ", stored,
                                     " bytes does not match the raw size ", raw));
    }
  } else {
    const unsigned long long content = ZSTD_getFrameContentSize(payload, stored);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) {
      return CodecError("bad zstd frame header");
    }
    if (content != raw) {
      return CodecError(absl::StrCat("zstd frame holds ", content, " bytes, header says ", raw));
    }
    const size_t frame = ZSTD_findFrameCompressedSize(payload, stored);
    if (ZSTD_isError(frame) || frame != stored) {
      return CodecError("zstd payload is not exactly one frame");
    }
    ZSTD_DCtx* dctx = ThreadDCtx();
    if (dctx == nullptr) return absl::ResourceExhaustedError("codec: ZSTD_createDCtx failed");
    decompressed.resize(raw);
    const size_t n = ZSTD_decompressDCtx(dctx, decompressed.data(), raw, payload, stored);
    if (ZSTD_isError(n)) {
      return CodecError(absl::StrCat("zstd: ", ZSTD_getErrorName(n)));
    }
    if (n != raw) {
      return CodecError(absl::StrCat("zstd produced ", n, " bytes, expected ", raw));
    }
    payload = decompressed.data();
  }

  result.rows = static_cast<int64_t>(rows);
  result.dim = static_cast<int64_t>(dim);
  result.values.resize(values);
  float* out = result.values.data();
  switch (result.spec.format) {
    case HiddenFormat::kFp32: DecodeFp32(payload, values, out); break;
    case HiddenFormat::kFp16: DecodeFp16(payload, values, out); break;
    case HiddenFormat::kBf16: DecodeBf16(payload, values, out); break;
    case HiddenFormat::kInt8:
      if (auto s = DecodeInt8(payload, rows, dim, out); !s.ok()) return s;
      break;
    case HiddenFormat::kInt4:
      if (auto s = DecodeInt4(payload, rows, dim, group, out); !s.ok()) return s;
      break;
  }
  return result;
}

}  // namespace tandem
