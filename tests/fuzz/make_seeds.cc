// Writes the seed inputs of every fuzz target into tests/fuzz/corpus/<target>/
// (committed; rerun after a format change):
//   build/tests/fuzz/tandem_fuzz_make_seeds SOURCE_DIR
// Seeds are small valid inputs the fuzzers mutate from; inputs that crashed a
// target are added next to them as crash-<sha1> files (tools/fuzz.sh).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tandem/codec.h"
#include "tandem/safetensors.h"

namespace fs = std::filesystem;

namespace {

fs::path corpus;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(corpus / target);
  std::ofstream(corpus / target / name, std::ios::binary) << bytes;
}

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// 2-byte little-endian length of `text`, the text, then `file` (the tokenizer
// targets' input layout).
std::string TextThenFile(const std::string& text, const std::string& file) {
  std::string out;
  out.push_back(static_cast<char>(text.size() & 0xff));
  out.push_back(static_cast<char>(text.size() >> 8));
  return out + text + file;
}

void Codec() {
  std::vector<float> values(3 * 16);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 7) - 3.25f;
  const char* specs[] = {"fp32", "fp16", "bf16", "int8", "int4", "int4-g64", "int8+zstd",
                         "bf16+zstd"};
  for (const char* name : specs) {
    auto spec = tandem::ParseCodecSpec(name);
    auto bytes = tandem::EncodeHidden(values.data(), 3, 16, *spec);
    // First byte: expected dim / 4 (16 -> 4).
    Write("codec_decode", std::string("seed-") + name, std::string(1, '\x04') + *bytes);
  }
}

void Configs(const fs::path& source) {
  Write("model_config", "seed-tandem-tiny", Read(source / "models/tandem-tiny/config.json"));
  Write("model_config", "seed-qwen2",
        R"({"model_type": "qwen2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "max_position_embeddings": 128, "rope_theta": 1000000.0, "use_sliding_window": false,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
  "tie_word_embeddings": false, "eos_token_id": [1, 2], "torch_dtype": "bfloat16"})");
  Write("model_config", "seed-generation",
        R"({"bos_token_id": 1, "do_sample": true, "eos_token_id": [2, 7], "temperature": 0.6,
  "top_k": 20, "top_p": 0.9})");
}

void Safetensors() {
  const fs::path tmp = fs::temp_directory_path() / "tandem_make_seeds.safetensors";
  std::vector<float> a(6, 1.5f);
  std::vector<uint16_t> b(4, 0x3c00);
  std::vector<tandem::TensorToWrite> tensors = {{"a.weight", tandem::DType::kF32, {2, 3}, a.data()},
                                                {"b.bias", tandem::DType::kF16, {4}, b.data()}};
  if (!tandem::WriteSafetensors(tmp.string(), tensors, {{"format", "pt"}}).ok()) {
    std::fprintf(stderr, "WriteSafetensors failed\n");
    return;
  }
  Write("safetensors", "seed-two-tensors", Read(tmp));
  fs::remove(tmp);
}

void Tokenizers(const fs::path& source) {
  const fs::path data = source / "tests/data/tokenizer";
  const std::string text = "Hello world, it's 2024! \xC3\xA9t\xC3\xA9 <s> \xF0\x9F\x98\x80 ";
  for (const char* dir : {"tiny_bytelevel", "tiny_metaspace", "tiny_sp"}) {
    Write("tokenizer_json", std::string("seed-") + dir,
          TextThenFile(text, Read(data / dir / "tokenizer.json")));
  }
  Write("spm_model", "seed-tiny_spm", TextThenFile(text, Read(data / "tiny_spm/tokenizer.model")));
}

// The session target's byte-coded message sequence (session_messages_fuzzer.cc):
// Open (valid, fp32, capacity 40), Context of 3 rows at 0, Continue at 3, Close.
void Session() {
  std::string s = {0, 0, 0, 40};
  s += std::string{1, 0, 0, 0, 2} + std::string(3 * 32, '\x50');
  s += std::string{3, 0, 1, 3, 0, 0} + std::string(32, '\x30');
  s += std::string{4};
  Write("session_messages", "seed-open-context-continue-close", s);
  std::string tokens = {0, 0, 0, 40, 2, 0, 0, 4, 1, 2, 3, 4, 3, 0, 7, 4, 0, 0};
  tokens += std::string(32, '\x20');
  Write("session_messages", "seed-token-resync", tokens);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOURCE_DIR\n", argv[0]);
    return 2;
  }
  const fs::path source = argv[1];
  corpus = source / "tests/fuzz/corpus";
  Codec();
  Configs(source);
  Safetensors();
  Tokenizers(source);
  Session();
  std::printf("seeds written under %s\n", corpus.c_str());
  return 0;
}
