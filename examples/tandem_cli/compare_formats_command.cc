// tandem compare-formats: how far each edge weight format (weight_format.h)
// moves the full model from the libtorch fp32 reference on held-out text,
// teacher-forced: top-1 agreement of the next-token prediction, perplexity,
// and the largest logit difference.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "commands.h"
#include "tandem/flags.h"
#include "tandem/fast_decoder.h"
#include "tandem/model.h"
#include "tandem/thread_pool.h"
#include "tandem/threads.h"
#include "token_input.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem compare-formats --model DIR --data FILE [flags]\n"
    "  --formats LIST       default fp32,fp16,bf16,int8,int4\n"
    "  --seq-len N          tokens per teacher-forced window (default 128)\n"
    "  --max-tokens N       positions to score (default 4096)\n"
    "  --threads N          threads (default: $OMP_NUM_THREADS or all cores)\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem compare-formats: %s\n", std::string(s.message()).c_str());
  return 1;
}

struct Score {
  int64_t positions = 0;
  int64_t agree = 0;   // argmax equals the reference's argmax
  double nll = 0.0;    // of the actual next token
  double max_diff = 0.0;
};

void Accumulate(const at::Tensor& logits, const at::Tensor& reference,
                const std::vector<int32_t>& next, Score* s) {
  at::Tensor logp = at::log_softmax(logits, -1);
  at::Tensor agree = logits.argmax(-1).eq(reference.argmax(-1));
  for (int64_t i = 0; i < logits.size(0); ++i) {
    s->nll -= logp[i][next[i]].item<double>();
  }
  s->agree += agree.sum().item<int64_t>();
  s->positions += logits.size(0);
  s->max_diff = std::max(s->max_diff, (logits - reference).abs().max().item<double>());
}

}  // namespace

int RunCompareFormatsCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(
      argc - 1, argv + 1, {"model", "data", "formats", "seq-len", "max-tokens", "threads"},
      {"help"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("model") || !flags->Has("data")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  auto seq_len = flags->GetInt<int64_t>("seq-len", 128, 2, int64_t{1} << 20);
  auto max_tokens = flags->GetInt<int64_t>("max-tokens", 4096, 1, int64_t{1} << 40);
  auto threads = flags->GetInt<int>("threads", 0, 0, 4096);
  for (const absl::Status& s : {seq_len.status(), max_tokens.status(), threads.status()}) {
    if (!s.ok()) return Fail(s);
  }
  std::vector<tandem::WeightFormat> formats;
  {
    std::string list = flags->Get("formats", "fp32,fp16,bf16,int8,int4");
    size_t start = 0;
    while (start <= list.size()) {
      const size_t comma = std::min(list.find(',', start), list.size());
      auto f = tandem::ParseWeightFormat(list.substr(start, comma - start));
      if (!f.ok()) return Fail(f.status());
      formats.push_back(*f);
      start = comma + 1;
    }
  }
  const int thread_count = tandem::SetComputeThreads(*threads);
  const std::string dir = flags->Get("model");
  auto model = tandem::Model::Load(dir);
  if (!model.ok()) return Fail(model.status());
  auto tokens = tandem::cli::ReadTokens(flags->Get("data"), dir);
  if (!tokens.ok()) return Fail(tokens.status());
  const tandem::ModelConfig& c = (*model)->config();
  const int64_t window = std::min<int64_t>(*seq_len, c.max_position_embeddings);

  at::InferenceMode guard;
  // Reference logits of every scored position, one window at a time.
  std::vector<std::vector<int32_t>> windows;
  for (size_t start = 0; start + window + 1 <= tokens->size() &&
                         static_cast<int64_t>(windows.size()) * window < *max_tokens;
       start += window) {
    windows.emplace_back(tokens->begin() + start, tokens->begin() + start + window + 1);
  }
  if (windows.empty()) return Fail(absl::InvalidArgumentError("--data is shorter than a window"));
  std::vector<at::Tensor> reference;
  for (const auto& w : windows) {
    std::vector<int64_t> ids(w.begin(), w.end() - 1);
    at::Tensor t = at::tensor(ids, at::kLong);
    auto h = (*model)->Embed(t);
    if (!h.ok()) return Fail(h.status());
    auto out = (*model)->ForwardLayers(0, c.num_hidden_layers, *h,
                                       at::arange(window, at::kLong), nullptr);
    if (!out.ok()) return Fail(out.status());
    auto logits = (*model)->Logits(*out);
    if (!logits.ok()) return Fail(logits.status());
    reference.push_back(*logits);
  }
  tandem::SetComputeThreads(1);
  tandem::ThreadPool pool(thread_count);
  std::printf("%-8s %10s %12s %12s %14s %12s\n", "weights", "positions", "agreement",
              "perplexity", "max|dlogit|", "weight MB");
  {
    Score s;
    for (size_t i = 0; i < windows.size(); ++i) {
      Accumulate(reference[i], reference[i],
                 std::vector<int32_t>(windows[i].begin() + 1, windows[i].end()), &s);
    }
    std::printf("%-8s %10lld %11.3f%% %12.3f %14s %12.1f\n", "libtorch",
                static_cast<long long>(s.positions), 100.0, std::exp(s.nll / s.positions), "-",
                (*model)->weight_bytes() / 1e6);
  }
  for (tandem::WeightFormat format : formats) {
    tandem::FastDecoderOptions options;
    options.format = format;
    auto fast = tandem::FastDecoder::FromModel(**model, options);
    if (!fast.ok()) return Fail(fast.status());
    auto ws = (*fast)->NewWorkspace(8, &pool);
    auto cache = (*fast)->NewCache(window);
    if (!cache.ok()) return Fail(cache.status());
    Score s;
    std::vector<float> hidden(window * c.hidden_size);
    for (size_t i = 0; i < windows.size(); ++i) {
      (*cache)->Clear();
      std::vector<int32_t> ids(windows[i].begin(), windows[i].end() - 1);
      absl::Status st = (*fast)->Embed(ids, hidden.data());
      if (st.ok()) {
        st = (*fast)->ForwardLayers(0, c.num_hidden_layers, hidden.data(), window, 0,
                                    cache->get(), ws.get());
      }
      at::Tensor logits = at::empty({window, c.vocab_size}, at::kFloat);
      if (st.ok()) st = (*fast)->Logits(hidden.data(), window, logits.data_ptr<float>(), ws.get());
      if (!st.ok()) return Fail(st);
      Accumulate(logits, reference[i],
                 std::vector<int32_t>(windows[i].begin() + 1, windows[i].end()), &s);
    }
    std::printf("%-8s %10lld %11.3f%% %12.3f %14.3g %12.1f\n", tandem::WeightFormatName(format),
                static_cast<long long>(s.positions), 100.0 * s.agree / s.positions,
                std::exp(s.nll / s.positions), s.max_diff, (*fast)->weight_bytes() / 1e6);
  }
  return 0;
}
