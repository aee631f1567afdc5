#include "tandem/safetensors.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::path(::testing::TempDir()) / "tandem_st_XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A raw safetensors file: prefix + header text + `data_bytes` zero bytes.
std::string RawFile(const std::string& header, size_t data_bytes) {
  return LengthPrefix(header.size()) + header + std::string(data_bytes, '\0');
}

// A small valid file with a few tensors, as bytes.
std::string ValidFileBytes(const TempDir& dir) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {7, 8, 9};
  std::vector<int64_t> c = {-1, 42};
  std::vector<TensorToWrite> tensors = {
      {"model.a", DType::kF32, {2, 3}, a.data()},
      {"model.b", DType::kBF16, {3}, b.data()},
      {"model.c", DType::kI64, {2}, c.data()},
  };
  std::string path = dir.File("valid.safetensors");
  EXPECT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());
  return ReadBytes(path);
}

void ExpectOpenFails(const TempDir& dir, const std::string& bytes, absl::StatusCode code,
                     const std::string& substring) {
  std::string path = dir.File("bad.safetensors");
  WriteBytes(path, bytes);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), code) << file.status();
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(substring));
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path));
}

// --- dtype helpers -----------------------------------------------------------

TEST(SafetensorsDType, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI8), 1u);
  EXPECT_EQ(DTypeSize(DType::kU8), 1u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_STREQ(DTypeName(DType::kBool), "BOOL");
  EXPECT_STREQ(DTypeName(DType::kF64), "F64");
}

TEST(SafetensorsTensorInfo, Numel) {
  TensorInfo t;
  EXPECT_EQ(t.numel(), 1);  // scalar
  t.shape = {2, 3, 4};
  EXPECT_EQ(t.numel(), 24);
  t.shape = {5, 0};
  EXPECT_EQ(t.numel(), 0);
}

// --- round trip ----------------------------------------------------------------

TEST(Safetensors, RoundTripEveryDType) {
  TempDir dir;
  const DType all[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                       DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> tensors;
  std::mt19937 rng(7);
  int i = 0;
  for (DType dt : all) {
    std::vector<int64_t> shape = {2, i % 3 + 1, 3};
    size_t bytes = 2 * (i % 3 + 1) * 3 * DTypeSize(dt);
    std::vector<uint8_t> buf(bytes);
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    if (dt == DType::kBool) {
      for (auto& b : buf) b &= 1;
    }
    buffers.push_back(std::move(buf));
    // Reverse-alphabetical input order: the writer must sort.
    tensors.push_back(
        {"t" + std::to_string(9 - i) + "." + DTypeName(dt), dt, shape, buffers.back().data()});
    ++i;
  }
  std::vector<double> scalar = {3.25};
  tensors.push_back({"scalar", DType::kF64, {}, scalar.data()});
  tensors.push_back({"empty", DType::kF32, {0, 4}, nullptr});

  const std::string path = dir.File("all.safetensors");
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "héllo"}};
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), metadata);
  EXPECT_EQ((*file)->path(), path);
  std::vector<std::string> expected_names;
  for (const auto& t : tensors) expected_names.push_back(t.name);
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ((*file)->names(), expected_names);

  for (const TensorToWrite& t : tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE((*file)->Has(t.name));
    auto info = (*file)->Get(t.name);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->name, t.name);
    EXPECT_EQ(info->dtype, t.dtype);
    EXPECT_EQ(info->shape, t.shape);
    const size_t bytes = static_cast<size_t>(info->numel()) * DTypeSize(t.dtype);
    ASSERT_EQ(info->size_bytes, bytes);
    if (bytes > 0) {
      EXPECT_EQ(std::memcmp(info->data, t.data, bytes), 0);
    }
  }
  double s;
  std::memcpy(&s, (*file)->Get("scalar")->data, sizeof(s));
  EXPECT_EQ(s, 3.25);
}

TEST(Safetensors, WriterPadsHeaderAndOrdersTensorsByName) {
  TempDir dir;
  std::vector<uint8_t> x(3, 1), y(5, 2), z(1, 3);
  const std::string path = dir.File("o.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"z", DType::kU8, {1}, z.data()},
                                      {"x", DType::kU8, {3}, x.data()},
                                      {"y", DType::kU8, {5}, y.data()}})
                  .ok());
  const std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 9);
  EXPECT_EQ(bytes.substr(8 + n), std::string("\1\1\1\2\2\2\2\2\3"));
  // Nothing but the file itself is left in the directory (no temp file).
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(Safetensors, WriterReplacesExistingFile) {
  TempDir dir;
  const std::string path = dir.File("r.safetensors");
  WriteBytes(path, "garbage");
  std::vector<int32_t> v = {5};
  ASSERT_TRUE(WriteSafetensors(path, {{"v", DType::kI32, {1}, v.data()}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Has("v"));
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  const std::string path = dir.File("w.safetensors");
  std::vector<float> v = {1, 2};
  EXPECT_EQ(
      WriteSafetensors(path, {{"a", DType::kF32, {2}, v.data()}, {"a", DType::kF32, {2}, v.data()}})
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"a", DType::kF32, {-2}, v.data()}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"a", DType::kF32, {2}, nullptr}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"", DType::kF32, {2}, v.data()}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"__metadata__", DType::kF32, {2}, v.data()}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(path, {{"bad\xff", DType::kF32, {2}, v.data()}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(
      WriteSafetensors(dir.File("no/such/dir/x.safetensors"), {{"a", DType::kF32, {2}, v.data()}})
          .ok());
}

TEST(Safetensors, WriterAcceptsEmptyCheckpoint) {
  TempDir dir;
  const std::string path = dir.File("e.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->names().empty());
}

TEST(Safetensors, GetMissingTensorIsNotFound) {
  TempDir dir;
  WriteBytes(dir.File("v.safetensors"), ValidFileBytes(dir));
  auto file = SafetensorsFile::Open(dir.File("v.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE((*file)->Has("nope"));
  EXPECT_EQ((*file)->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*file)->Get("__metadata__").status().code(), absl::StatusCode::kNotFound);
}

TEST(Safetensors, OpenMissingFileIsNotFound) {
  TempDir dir;
  EXPECT_EQ(SafetensorsFile::Open(dir.File("absent.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(Safetensors, OpenDirectoryFails) {
  TempDir dir;
  EXPECT_FALSE(SafetensorsFile::Open(dir.path()).ok());
}

TEST(Safetensors, OpenFifoFailsWithoutBlocking) {
  TempDir dir;
  const std::string path = dir.File("fifo.safetensors");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("not a regular file"));
}

TEST(Safetensors, AcceptsPaddingAndZeroSizedTensorsSharingAnOffset) {
  TempDir dir;
  const std::string header = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("c":{"dtype":"F16","shape":[2,0],"data_offsets":[4,4]}}     )";
  std::string path = dir.File("z.safetensors");
  WriteBytes(path, RawFile(header, 4));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names().size(), 3u);
}

// --- corrupted files --------------------------------------------------------

TEST(SafetensorsCorrupt, EmptyFile) {
  TempDir dir;
  ExpectOpenFails(dir, "", absl::StatusCode::kDataLoss, "too short");
}

TEST(SafetensorsCorrupt, TruncatedLengthPrefix) {
  TempDir dir;
  ExpectOpenFails(dir, std::string("\x10\0\0\0\0", 5), absl::StatusCode::kDataLoss, "too short");
}

TEST(SafetensorsCorrupt, HeaderLengthLargerThanFile) {
  TempDir dir;
  ExpectOpenFails(dir, LengthPrefix(1000) + "{}", absl::StatusCode::kDataLoss,
                  "header length 1000");
}

TEST(SafetensorsCorrupt, AbsurdHeaderLength) {
  TempDir dir;
  ExpectOpenFails(dir, LengthPrefix(~uint64_t{0}) + "{}", absl::StatusCode::kInvalidArgument,
                  "exceeds the limit");
}

TEST(SafetensorsCorrupt, BadHeaderJson) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"a": {"dtype": )", 0), absl::StatusCode::kInvalidArgument,
                  "not valid JSON");
}

TEST(SafetensorsCorrupt, ZeroLengthHeader) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile("", 16), absl::StatusCode::kInvalidArgument, "not valid JSON");
}

TEST(SafetensorsCorrupt, HeaderNotAnObject) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile("[1, 2, 3]", 0), absl::StatusCode::kInvalidArgument,
                  "must be a JSON object");
}

TEST(SafetensorsCorrupt, EntryNotAnObject) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w": 5})", 0), absl::StatusCode::kInvalidArgument, "tensor 'w'");
}

TEST(SafetensorsCorrupt, UnknownDType) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}})", 2),
                  absl::StatusCode::kInvalidArgument, "tensor 'w': unsupported dtype \"Q4_K\"");
}

TEST(SafetensorsCorrupt, MissingDType) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"shape":[2],"data_offsets":[0,2]}})", 2),
                  absl::StatusCode::kInvalidArgument, "dtype");
}

TEST(SafetensorsCorrupt, NegativeDim) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"U8","shape":[2,-1],"data_offsets":[0,2]}})", 2),
                  absl::StatusCode::kInvalidArgument, "negative");
}

TEST(SafetensorsCorrupt, FractionalDim) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,2]}})", 2),
                  absl::StatusCode::kInvalidArgument, "must be an integer");
}

TEST(SafetensorsCorrupt, ShapeNotArray) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"U8","shape":2,"data_offsets":[0,2]}})", 2),
                  absl::StatusCode::kInvalidArgument, "shape");
}

TEST(SafetensorsCorrupt, ShapeDTypeSizeMismatch) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}})", 24),
                  absl::StatusCode::kInvalidArgument, "need 24 bytes");
}

TEST(SafetensorsCorrupt, ElementCountOverflow) {
  TempDir dir;
  ExpectOpenFails(
      dir,
      RawFile(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
      absl::StatusCode::kInvalidArgument, "overflow");
  ExpectOpenFails(
      dir,
      RawFile(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
      absl::StatusCode::kInvalidArgument, "overflow");
}

TEST(SafetensorsCorrupt, OffsetsReversed) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[4,2]}})", 8),
                  absl::StatusCode::kInvalidArgument, "end before");
}

TEST(SafetensorsCorrupt, OffsetsWrongArity) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0]}})", 8),
                  absl::StatusCode::kInvalidArgument, "data_offsets");
}

TEST(SafetensorsCorrupt, OffsetsOutOfRange) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})", 8),
                  absl::StatusCode::kDataLoss, "run past the end");
  ExpectOpenFails(dir,
                  RawFile(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,)"
                          R"(18446744073709551615]}})",
                          8),
                  absl::StatusCode::kInvalidArgument, "too large");
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  TempDir dir;
  ExpectOpenFails(dir,
                  RawFile(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"U8","shape":[4],"data_offsets":[3,7]}})",
                          8),
                  absl::StatusCode::kInvalidArgument, "overlap");
  // One tensor inside another.
  ExpectOpenFails(dir,
                  RawFile(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                          8),
                  absl::StatusCode::kInvalidArgument, "overlap");
}

TEST(SafetensorsCorrupt, DuplicateTensorName) {
  TempDir dir;
  ExpectOpenFails(dir,
                  RawFile(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                          R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                          8),
                  absl::StatusCode::kInvalidArgument, "'a' twice");
}

TEST(SafetensorsCorrupt, MetadataNotStringMap) {
  TempDir dir;
  ExpectOpenFails(dir, RawFile(R"({"__metadata__":{"format":1}})", 0),
                  absl::StatusCode::kInvalidArgument, "__metadata__");
  ExpectOpenFails(dir, RawFile(R"({"__metadata__":["pt"]})", 0), absl::StatusCode::kInvalidArgument,
                  "__metadata__");
}

TEST(SafetensorsCorrupt, DataTruncated) {
  TempDir dir;
  std::string bytes = ValidFileBytes(dir);
  bytes.resize(bytes.size() - 3);
  ExpectOpenFails(dir, bytes, absl::StatusCode::kDataLoss, "tensor 'model.c'");
}

// Random mutations and truncations of a valid file: Open either succeeds or
// returns an error; it never crashes or reads outside the file (run under ASan
// to check the latter). Every tensor of a file that opens is read end to end.
TEST(SafetensorsFuzz, RandomMutationsNeverCrash) {
  TempDir dir;
  const std::string valid = ValidFileBytes(dir);
  const std::string path = dir.File("fuzz.safetensors");
  // Rewritten in place (pwrite + ftruncate): truncating and recreating a file
  // 2000 times costs seconds on some filesystems.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  uint64_t valid_header_size = 0;
  for (int i = 7; i >= 0; --i) {
    valid_header_size = (valid_header_size << 8) | static_cast<uint8_t>(valid[i]);
  }
  ASSERT_GT(valid_header_size, 0u);
  std::mt19937 rng(12345);
  int opened = 0, failed = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bytes = valid;
    const int kind = iter % 4;
    if (kind == 0) {  // truncate
      bytes.resize(rng() % (bytes.size() + 1));
    } else if (kind == 1) {  // flip a few random bytes anywhere
      for (int k = 1 + rng() % 4; k > 0; --k) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
    } else if (kind == 2) {  // mutate the header text only, with JSON-ish characters
      static const char kChars[] = "{}[]\",:0123456789-.eE ";
      const size_t header_end = 8 + valid_header_size;
      for (int k = 1 + rng() % 3; k > 0; --k) {
        size_t pos = 8 + rng() % (header_end - 8);
        bytes[pos] = kChars[rng() % (sizeof(kChars) - 1)];
      }
    } else {  // corrupt the length prefix
      bytes[rng() % 8] = static_cast<char>(rng());
    }
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(bytes.size())), 0);
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) {
      ++failed;
      EXPECT_FALSE(file.status().message().empty());
      continue;
    }
    ++opened;
    uint64_t sum = 0;
    for (const std::string& name : (*file)->names()) {
      auto info = (*file)->Get(name);
      ASSERT_TRUE(info.ok());
      for (size_t i = 0; i < info->size_bytes; ++i) sum += info->data[i];
    }
    (void)sum;
  }
  ::close(fd);
  // Both outcomes occur, so the loop explores more than the first check.
  EXPECT_GT(opened, 20);
  EXPECT_GT(failed, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// --- CheckpointReader -------------------------------------------------------

// Writes `names` (each a 2-element f32 tensor whose values encode the name's
// length) to dir/file.
void WriteShard(const TempDir& dir, const std::string& file,
                const std::vector<std::string>& names) {
  std::vector<std::vector<float>> data;
  std::vector<TensorToWrite> tensors;
  data.reserve(names.size());
  for (const std::string& n : names) {
    data.push_back({static_cast<float>(n.size()), 1.0f});
    tensors.push_back({n, DType::kF32, {2}, data.back().data()});
  }
  ASSERT_TRUE(WriteSafetensors(dir.File(file), tensors).ok());
}

TEST(CheckpointReader, SingleFilePath) {
  TempDir dir;
  WriteShard(dir, "weights.safetensors", {"a", "b"});
  auto reader = CheckpointReader::Open(dir.File("weights.safetensors"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->names(), (std::vector<std::string>{"a", "b"}));
}

TEST(CheckpointReader, DirectoryWithModelSafetensorsIgnoresOtherFiles) {
  TempDir dir;
  WriteShard(dir, "model.safetensors", {"embed", "lm_head"});
  WriteShard(dir, "tandem_exits.safetensors", {"exit.0.norm"});
  WriteShard(dir, "other.safetensors", {"embed"});
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->names(), (std::vector<std::string>{"embed", "lm_head"}));
  auto info = (*reader)->Get("lm_head");
  ASSERT_TRUE(info.ok()) << info.status();
  float v;
  std::memcpy(&v, info->data, sizeof(v));
  EXPECT_EQ(v, 7.0f);
  EXPECT_EQ((*reader)->Get("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE((*reader)->Has("exit.0.norm"));
}

void WriteIndex(const TempDir& dir, const std::string& weight_map_json) {
  WriteBytes(dir.File("model.safetensors.index.json"),
             R"({"metadata": {"total_size": 48}, "weight_map": )" + weight_map_json + "}");
}

TEST(CheckpointReader, ShardedViaIndex) {
  TempDir dir;
  WriteShard(dir, "model-00001-of-00002.safetensors", {"layers.0.w", "embed"});
  WriteShard(dir, "model-00002-of-00002.safetensors", {"layers.1.w", "norm"});
  WriteIndex(dir, R"({"embed": "model-00001-of-00002.safetensors",
                      "layers.0.w": "model-00001-of-00002.safetensors",
                      "layers.1.w": "model-00002-of-00002.safetensors",
                      "norm": "model-00002-of-00002.safetensors"})");
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->names(),
            (std::vector<std::string>{"embed", "layers.0.w", "layers.1.w", "norm"}));
  for (const std::string& name : (*reader)->names()) {
    auto info = (*reader)->Get(name);
    ASSERT_TRUE(info.ok()) << info.status();
    float v;
    std::memcpy(&v, info->data, sizeof(v));
    EXPECT_EQ(v, static_cast<float>(name.size()));
  }
}

TEST(CheckpointReader, IndexPointingAtMissingShard) {
  TempDir dir;
  WriteShard(dir, "model-00001-of-00002.safetensors", {"a"});
  WriteIndex(dir, R"({"a": "model-00001-of-00002.safetensors",
                      "b": "model-00002-of-00002.safetensors"})");
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_FALSE(reader.ok());
  EXPECT_THAT(std::string(reader.status().message()),
              HasSubstr("model-00002-of-00002.safetensors"));
}

TEST(CheckpointReader, IndexPointingAtMissingTensor) {
  TempDir dir;
  WriteShard(dir, "model-00001-of-00001.safetensors", {"a"});
  WriteIndex(dir, R"({"a": "model-00001-of-00001.safetensors",
                      "ghost": "model-00001-of-00001.safetensors"})");
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(reader.status().message()), HasSubstr("'ghost'"));
}

TEST(CheckpointReader, IndexShardNameEscapingDirectory) {
  for (const char* shard :
       {"../outside.safetensors", "/etc/passwd", "sub/x.safetensors", "..", ""}) {
    SCOPED_TRACE(shard);
    TempDir dir;
    WriteShard(dir, "x.safetensors", {"a"});
    WriteIndex(dir, std::string(R"({"a": ")") + shard + "\"}");
    auto reader = CheckpointReader::Open(dir.path());
    ASSERT_FALSE(reader.ok());
    EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(reader.status().message()), HasSubstr("plain file name"));
  }
}

TEST(CheckpointReader, IndexMalformed) {
  TempDir dir;
  WriteShard(dir, "x.safetensors", {"a"});
  WriteBytes(dir.File("model.safetensors.index.json"), "{not json");
  EXPECT_EQ(CheckpointReader::Open(dir.path()).status().code(), absl::StatusCode::kInvalidArgument);
  WriteBytes(dir.File("model.safetensors.index.json"), R"({"weight_map": ["x"]})");
  EXPECT_EQ(CheckpointReader::Open(dir.path()).status().code(), absl::StatusCode::kInvalidArgument);
  WriteBytes(dir.File("model.safetensors.index.json"), R"({"weight_map": {"a": 3}})");
  EXPECT_EQ(CheckpointReader::Open(dir.path()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckpointReader, CorruptShardReportsShardName) {
  TempDir dir;
  WriteBytes(dir.File("model-00001-of-00001.safetensors"), "short");
  WriteIndex(dir, R"({"a": "model-00001-of-00001.safetensors"})");
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(reader.status().message()),
              HasSubstr("model-00001-of-00001.safetensors"));
}

TEST(CheckpointReader, GlobsSafetensorsWithoutIndexExcludingExits) {
  TempDir dir;
  WriteShard(dir, "part-b.safetensors", {"y"});
  WriteShard(dir, "part-a.safetensors", {"x"});
  WriteShard(dir, "tandem_exits.safetensors", {"x"});  // would collide if read
  WriteBytes(dir.File("config.json"), "{}");
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->names(), (std::vector<std::string>{"x", "y"}));
}

TEST(CheckpointReader, DuplicateTensorAcrossFilesIsError) {
  TempDir dir;
  WriteShard(dir, "part-a.safetensors", {"x", "shared"});
  WriteShard(dir, "part-b.safetensors", {"y", "shared"});
  auto reader = CheckpointReader::Open(dir.path());
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(reader.status().message()), HasSubstr("'shared'"));
}

TEST(CheckpointReader, EmptyDirectoryIsNotFound) {
  TempDir dir;
  EXPECT_EQ(CheckpointReader::Open(dir.path()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CheckpointReader::Open(dir.File("nope")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tandem
