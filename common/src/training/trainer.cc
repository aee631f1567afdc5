#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <ATen/autocast_mode.h>
#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include "absl/strings/str_cat.h"
#include "tandem/model.h"
#include "tandem/status_macros.h"
#include "tandem/train.h"
#include "training/autocast_scope.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kStateFile[] = "trainer_state.pt";

// Windows of seq_len + 1 tokens: inputs are the first seq_len, targets the last.
at::Tensor Windows(const std::vector<uint16_t>& data, const std::vector<int64_t>& starts,
                   int64_t seq_len) {
  at::Tensor out = at::empty({static_cast<int64_t>(starts.size()), seq_len + 1}, at::kLong);
  int64_t* p = out.data_ptr<int64_t>();
  for (size_t b = 0; b < starts.size(); ++b) {
    for (int64_t t = 0; t <= seq_len; ++t) *p++ = data[starts[b] + t];
  }
  return out;
}

// Linear warmup, then cosine decay to min_lr_ratio. With a wall-time limit the
// decay follows whichever of steps or time runs out first, so a run cut by
// max_minutes still ends at the floor learning rate.
double LearningRate(const TrainOptions& o, int64_t step, double time_fraction) {
  if (step < o.warmup_steps) return o.learning_rate * (step + 1) / o.warmup_steps;
  const double progress = std::max(static_cast<double>(step - o.warmup_steps) /
                                       std::max<int64_t>(1, o.max_steps - o.warmup_steps),
                                   time_fraction);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
  return o.learning_rate * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine);
}

// Cross-entropy of the final layer and of each exit layer (through the shared
// final norm + LM head) for windows [B, seq_len + 1].
absl::StatusOr<std::vector<at::Tensor>> Losses(const Model& model, const at::Tensor& windows,
                                               const std::vector<int64_t>& exits,
                                               int64_t exit_stride) {
  const int64_t seq_len = windows.size(1) - 1;
  at::Tensor inputs = windows.narrow(1, 0, seq_len);
  at::Tensor targets = windows.narrow(1, 1, seq_len).reshape({-1});
  at::Tensor positions = at::arange(seq_len, at::kLong);
  const int64_t vocab = model.config().vocab_size;
  TANDEM_ASSIGN_OR_RETURN(at::Tensor h, model.Embed(inputs));
  std::vector<at::Tensor> exit_losses;
  int64_t layer = 0;
  // Exit losses use every `exit_stride`-th position: the LM head over the full
  // vocabulary dominates their cost, and a subsample is an unbiased estimate.
  at::Tensor exit_targets =
      windows.narrow(1, 1, seq_len).slice(1, 0, seq_len, exit_stride).reshape({-1});
  for (int64_t e : exits) {
    TANDEM_ASSIGN_OR_RETURN(h, model.ForwardLayers(layer, e, h, positions, nullptr));
    layer = e;
    TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, model.Logits(h.slice(1, 0, seq_len, exit_stride)));
    exit_losses.push_back(at::cross_entropy_loss(logits.view({-1, vocab}), exit_targets));
  }
  TANDEM_ASSIGN_OR_RETURN(
      h, model.ForwardLayers(layer, model.config().num_hidden_layers, h, positions, nullptr));
  TANDEM_ASSIGN_OR_RETURN(at::Tensor logits, model.Logits(h));
  std::vector<at::Tensor> losses = {at::cross_entropy_loss(logits.view({-1, vocab}), targets)};
  losses.insert(losses.end(), exit_losses.begin(), exit_losses.end());
  return losses;
}

absl::Status ValidateOptions(const TrainOptions& o, const ModelConfig& c) {
  if (o.seq_len <= 0 || o.batch_size <= 0 || o.max_steps <= 0) {
    return absl::InvalidArgumentError("seq_len, batch_size and max_steps must be positive");
  }
  if (o.seq_len > c.max_position_embeddings) {
    return absl::InvalidArgumentError("seq_len exceeds the model's max_position_embeddings");
  }
  if (c.vocab_size > 65536) return absl::InvalidArgumentError("token files hold uint16 ids");
  int64_t previous = 0;
  for (int64_t e : o.exit_layers) {
    if (e <= previous || e >= c.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exit layers must be increasing and inside (0, ", c.num_hidden_layers, ")"));
    }
    previous = e;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<uint16_t>> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open token file ", path));
  const std::streamoff size = in.tellg();
  if (size <= 0 || size % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": size ", size,
                                                   " is not a positive multiple of 2"));
  }
  std::vector<uint16_t> data(size / 2);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()), size);
  if (!in) return absl::DataLossError(absl::StrCat("short read from ", path));
  return data;
}

absl::StatusOr<TrainResult> TrainModel(const TrainOptions& o,
                                       const std::function<void(const TrainProgress&)>& on_progress) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<uint16_t> train, ReadTokenFile(o.train_data));
  TANDEM_ASSIGN_OR_RETURN(std::vector<uint16_t> valid, ReadTokenFile(o.valid_data));
  const fs::path out(o.out_dir);
  const bool resuming = o.resume && fs::exists(out / kStateFile);

  std::unique_ptr<Model> model;
  if (resuming) {
    TANDEM_ASSIGN_OR_RETURN(model, Model::Load(o.out_dir));
  } else {
    TANDEM_ASSIGN_OR_RETURN(model, Model::CreateRandom(o.config, {}, o.seed));
  }
  const ModelConfig& c = model->config();
  TANDEM_RETURN_IF_ERROR(ValidateOptions(o, c));
  for (const std::vector<uint16_t>* d : {&train, &valid}) {
    if (static_cast<int64_t>(d->size()) <= o.seq_len + 1) {
      return absl::InvalidArgumentError("a token file is shorter than one training window");
    }
    for (uint16_t id : *d) {
      if (id >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " >= vocab size ",
                                                       c.vocab_size));
      }
    }
  }

  std::vector<at::Tensor> decay, no_decay, all;
  TrainResult result;
  for (auto& [name, t] : model->NamedParameters()) {
    t.requires_grad_(true);
    (t.dim() >= 2 ? decay : no_decay).push_back(t);
    all.push_back(t);
    result.parameters += t.numel();
  }
  using torch::optim::AdamWOptions;
  auto group_options = [&](double wd) {
    return std::make_unique<AdamWOptions>(
        AdamWOptions(o.learning_rate).betas({o.beta1, o.beta2}).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, group_options(o.weight_decay));
  groups.emplace_back(no_decay, group_options(0.0));
  torch::optim::AdamW optimizer(groups, AdamWOptions(o.learning_rate));

  int64_t step = 0;
  double previous_seconds = 0.0;  // wall time of earlier runs of this training
  try {
    if (resuming) {
      torch::serialize::InputArchive archive;
      archive.load_from((out / kStateFile).string());
      optimizer.load(archive);
      at::Tensor saved_step;
      archive.read("step", saved_step);
      step = saved_step.item<int64_t>();
      at::Tensor saved_seconds;
      if (archive.try_read("elapsed_seconds", saved_seconds)) {
        previous_seconds = saved_seconds.item<double>();
      }
      std::fprintf(stderr, "resuming %s at step %lld\n", o.out_dir.c_str(),
                   static_cast<long long>(step));
    }
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat("cannot resume from ", (out / kStateFile).string(),
                                            ": ", e.what_without_backtrace()));
  }

  const Clock::time_point start = Clock::now();
  auto save = [&]() -> absl::Status {
    TANDEM_RETURN_IF_ERROR(model->Save(o.out_dir, at::kFloat));
    try {
      torch::serialize::OutputArchive archive;
      optimizer.save(archive);
      archive.write("step", at::tensor(step, at::kLong));
      archive.write("elapsed_seconds",
                    at::tensor(previous_seconds +
                                   std::chrono::duration<double>(Clock::now() - start).count(),
                               at::kDouble));
      const std::string tmp = (out / (std::string(kStateFile) + ".tmp")).string();
      archive.save_to(tmp);
      fs::rename(tmp, out / kStateFile);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("saving trainer state: ", e.what()));
    }
    return absl::OkStatus();
  };

  auto validate = [&](TrainProgress* p) -> absl::Status {
    at::NoGradGuard no_grad;
    const int64_t span = static_cast<int64_t>(valid.size()) - o.seq_len - 1;
    std::vector<double> sums(1 + o.exit_layers.size(), 0.0);
    const int64_t per_batch = o.batch_size;
    int64_t done = 0;
    while (done < o.eval_windows) {
      std::vector<int64_t> starts;
      for (int64_t i = 0; i < per_batch && done < o.eval_windows; ++i, ++done) {
        starts.push_back(span * done / std::max<int64_t>(1, o.eval_windows - 1));
      }
      AutocastScope autocast(o.bf16_autocast);
      TANDEM_ASSIGN_OR_RETURN(std::vector<at::Tensor> losses,
                              Losses(*model, Windows(valid, starts, o.seq_len), o.exit_layers, 1));
      for (size_t i = 0; i < losses.size(); ++i) {
        sums[i] += losses[i].item<double>() * starts.size();
      }
    }
    p->valid_loss = sums[0] / o.eval_windows;
    p->valid_exit_losses.clear();
    for (size_t i = 1; i < sums.size(); ++i) p->valid_exit_losses.push_back(sums[i] / o.eval_windows);
    result.final_valid_loss = p->valid_loss;
    return absl::OkStatus();
  };

  const int64_t first_step = step;
  const int64_t span = static_cast<int64_t>(train.size()) - o.seq_len - 1;
  try {
    while (step < o.max_steps) {
      std::mt19937_64 rng(o.seed * 1000003ULL + static_cast<uint64_t>(step));
      std::uniform_int_distribution<int64_t> pick(0, span);
      std::vector<int64_t> starts(o.batch_size);
      for (int64_t& s : starts) s = pick(rng);
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const double time_fraction =
          o.max_minutes > 0 ? (previous_seconds + elapsed) / (o.max_minutes * 60.0) : 0.0;
      const double lr = LearningRate(o, step, time_fraction);
      for (auto& group : optimizer.param_groups()) {
        static_cast<AdamWOptions&>(group.options()).lr(lr);
      }
      at::Tensor loss, final_loss;
      {
        AutocastScope autocast(o.bf16_autocast);
        TANDEM_ASSIGN_OR_RETURN(std::vector<at::Tensor> losses,
                                Losses(*model, Windows(train, starts, o.seq_len), o.exit_layers,
                                       o.exit_loss_stride));
        final_loss = losses[0];
        loss = losses[0];
        if (losses.size() > 1 && o.exit_loss_weight > 0) {
          at::Tensor exits = losses[1];
          for (size_t i = 2; i < losses.size(); ++i) exits = exits + losses[i];
          loss = loss + o.exit_loss_weight * exits / static_cast<double>(losses.size() - 1);
        }
      }
      optimizer.zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(all, o.grad_clip);
      optimizer.step();
      ++step;

      TrainProgress p;
      p.step = step;
      p.max_steps = o.max_steps;
      p.loss = final_loss.item<double>();
      p.learning_rate = lr;
      p.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double tokens = static_cast<double>(step - first_step) * o.batch_size * o.seq_len;
      p.tokens_per_second = tokens / std::max(1e-9, p.elapsed_seconds);
      p.eta_seconds = p.elapsed_seconds / (step - first_step) * (o.max_steps - step);
      const bool out_of_time =
          o.max_minutes > 0 && previous_seconds + p.elapsed_seconds > o.max_minutes * 60.0;
      const bool last = step == o.max_steps || out_of_time;
      if ((o.eval_every > 0 && step % o.eval_every == 0) || last) {
        TANDEM_RETURN_IF_ERROR(validate(&p));
      }
      if (on_progress) on_progress(p);
      if ((o.save_every > 0 && step % o.save_every == 0) || last) TANDEM_RETURN_IF_ERROR(save());
      result.tokens_seen = step * o.batch_size * o.seq_len;
      if (out_of_time) break;
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("training step ", step, ": ", e.what_without_backtrace()));
  }
  result.steps = step;
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace tandem
