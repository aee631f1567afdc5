#include "tandem/exit_training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "absl/strings/str_cat.h"
#include "tandem/status_macros.h"
#include "tandem/train.h"
#include "training/autocast_scope.h"

namespace tandem {

absl::StatusOr<int64_t> TrainExitHeads(
    const Model& model, ExitHeads& heads, const ExitTrainOptions& o,
    const std::function<void(const ExitTrainProgress&)>& on_progress) {
  const ModelConfig& c = model.config();
  if (model.layer_begin() != 0 || model.layer_end() != c.num_hidden_layers) {
    return absl::FailedPreconditionError("exit training needs the whole model");
  }
  std::vector<int32_t> data = o.train_tokens;
  if (data.empty()) {
    TANDEM_ASSIGN_OR_RETURN(std::vector<uint16_t> file, ReadTokenFile(o.train_data));
    data.assign(file.begin(), file.end());
  }
  if (o.seq_len <= 0 || o.batch_size <= 0) {
    return absl::InvalidArgumentError("seq_len and batch_size must be > 0");
  }
  if (static_cast<int64_t>(data.size()) <= o.seq_len + 1) {
    return absl::InvalidArgumentError("the training data is shorter than one window");
  }
  for (int32_t id : data) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " outside the vocabulary of ",
                                                     c.vocab_size));
    }
  }
  std::vector<at::Tensor> params;
  for (auto& [name, t] : heads.NamedParameters()) params.push_back(t.requires_grad_(true));
  torch::optim::AdamW optimizer(
      params, torch::optim::AdamWOptions(o.learning_rate).betas({0.9, 0.99}).weight_decay(0.0));

  const auto start = std::chrono::steady_clock::now();
  const int64_t span = static_cast<int64_t>(data.size()) - o.seq_len - 1;
  const at::Tensor positions = at::arange(o.seq_len, at::kLong);
  int64_t step = 0;
  try {
    for (; step < o.max_steps; ++step) {
      if (o.stop_requested && o.stop_requested()) {
        for (at::Tensor& t : params) t.requires_grad_(false);
        return absl::CancelledError(absl::StrCat("exit training cancelled after ", step, " steps"));
      }
      std::mt19937_64 rng(o.seed * 7919ULL + static_cast<uint64_t>(step));
      std::uniform_int_distribution<int64_t> pick(0, span);
      at::Tensor windows = at::empty({o.batch_size, o.seq_len + 1}, at::kLong);
      int64_t* dst = windows.data_ptr<int64_t>();
      for (int64_t b = 0; b < o.batch_size; ++b) {
        const int64_t s = pick(rng);
        std::copy(data.begin() + s, data.begin() + s + o.seq_len + 1, dst + b * (o.seq_len + 1));
      }
      at::Tensor inputs = windows.narrow(1, 0, o.seq_len);
      at::Tensor targets = windows.narrow(1, 1, o.seq_len).reshape({-1});

      // The frozen backbone: hidden states at each exit and the teacher.
      std::vector<at::Tensor> hidden;
      at::Tensor teacher_logp;
      {
        at::NoGradGuard no_grad;
        AutocastScope autocast(o.bf16_autocast);
        TANDEM_ASSIGN_OR_RETURN(at::Tensor h, model.Embed(inputs));
        int64_t layer = 0;
        for (int64_t e : heads.layers()) {
          TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, e, h, positions, nullptr));
          layer = e;
          hidden.push_back(h.detach());
        }
        TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, c.num_hidden_layers, h, positions,
                                                       nullptr));
        TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, model.Logits(h));
        teacher_logp = at::log_softmax(logits.view({-1, c.vocab_size}), -1);
      }
      const double lr =
          o.learning_rate * std::min(1.0, static_cast<double>(step + 1) / std::max<int64_t>(1, o.warmup_steps));
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      ExitTrainProgress p;
      at::Tensor loss;
      {
        AutocastScope autocast(o.bf16_autocast);
        for (size_t i = 0; i < hidden.size(); ++i) {
          TANDEM_ASSIGN_OR_RETURN(at::Tensor logits,
                                  heads.Logits(model, heads.layers()[i], hidden[i]));
          at::Tensor logp = at::log_softmax(logits.view({-1, c.vocab_size}).to(at::kFloat), -1);
          at::Tensor kl = (teacher_logp.exp() * (teacher_logp - logp)).sum(-1).mean();
          at::Tensor ce = at::nll_loss(logp, targets);
          at::Tensor l = o.kl_weight * kl + o.ce_weight * ce;
          loss = loss.defined() ? loss + l : l;
          p.kl.push_back(kl.item<double>());
          p.ce.push_back(ce.item<double>());
        }
      }
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      p.step = step + 1;
      p.max_steps = o.max_steps;
      p.elapsed_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (on_progress) on_progress(p);
      if (o.max_minutes > 0 && p.elapsed_seconds > o.max_minutes * 60.0) {
        ++step;
        break;
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("exit training step ", step, ": ",
                                            e.what_without_backtrace()));
  }
  for (at::Tensor& t : params) t.requires_grad_(false);
  return step;
}

}  // namespace tandem
