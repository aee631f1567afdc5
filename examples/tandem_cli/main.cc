// `tandem`: the command-line front end. One subcommand per file.
#include <cstdio>
#include <cstring>

#include "commands.h"

namespace {

void Usage() {
  std::fprintf(stderr,
               "usage: tandem <command> [flags]\n"
               "commands:\n"
               "  tokenize   --tokenizer FILE|DIR [--decode]   text on stdin -> ids (or back)\n"
               "  generate   --model DIR --prompt TEXT [--max-new-tokens N] [--temperature T]\n"
               "             [--top-k K] [--top-p P] [--seed S] [--dtype float32|bfloat16]\n"
               "             [--threads N] [--weights fp32|fp16|bf16|int8|int4]\n"
               "  edge       --model DIR --prompt TEXT [--split S] [--exits 2,4] [--threshold T]\n"
               "             [--max-new-tokens N] ...   standalone edge generation + exit stats\n"
               "  random-model --out DIR --tokenizer FILE [--layers N] [--hidden D] ...\n"
               "  train      --train F.bin --valid F.bin --tokenizer T --out DIR [...]\n"
               "  train-exits --model DIR --exits 2,4 --train F.bin [...]\n"
               "  calibrate  --model DIR --data FILE [--target-agreement 0.99] [--split S]\n"
               "  evaluate   --model DIR --data FILE [--unigram-from F.bin]\n"
               "  export     --model DIR --out DIR [--dtype float16]\n"
               "  compare-formats --model DIR --data FILE   edge weight formats vs fp32\n"
               "Run `tandem <command> --help` for a command's flags.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    Usage();
    return argc < 2 ? 2 : 0;
  }
  const char* command = argv[1];
  // Subcommands see their own name as argv[0].
  if (!std::strcmp(command, "tokenize")) return RunTokenizeCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "generate")) return RunGenerateCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "edge")) return RunEdgeCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "random-model")) return RunRandomModelCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "train")) return RunTrainCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "train-exits")) return RunTrainExitsCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "calibrate")) return RunCalibrateCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "evaluate")) return RunEvaluateCommand(argc - 1, argv + 1);
  if (!std::strcmp(command, "compare-formats")) {
    return RunCompareFormatsCommand(argc - 1, argv + 1);
  }
  if (!std::strcmp(command, "export")) return RunExportCommand(argc - 1, argv + 1);
  std::fprintf(stderr, "tandem: unknown command '%s'\n", command);
  Usage();
  return 2;
}
