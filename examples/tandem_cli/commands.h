// Sub-commands of the `tandem` CLI. Each takes the arguments after the program
// name: argv[0] is the sub-command's own name (e.g. "tokenize"), the flags
// follow. Each returns the process exit code (0 on success, 1 on error with a
// message on stderr).
#ifndef TANDEM_EXAMPLES_TANDEM_CLI_COMMANDS_H_
#define TANDEM_EXAMPLES_TANDEM_CLI_COMMANDS_H_

// tandem tokenize --tokenizer FILE_OR_DIR [--decode] [--no-special]
int RunTokenizeCommand(int argc, char** argv);
// tandem generate --model DIR --prompt TEXT [--max-new-tokens N] [...]
int RunGenerateCommand(int argc, char** argv);
// tandem random-model --out DIR --tokenizer FILE [--layers N] [...]
int RunRandomModelCommand(int argc, char** argv);
// tandem train --train F.bin --valid F.bin --tokenizer T --out DIR [...]
int RunTrainCommand(int argc, char** argv);
// tandem train-exits --model DIR --exits 2,4 --train F.bin [...]
int RunTrainExitsCommand(int argc, char** argv);
// tandem calibrate --model DIR --data FILE [--target-agreement 0.99]
int RunCalibrateCommand(int argc, char** argv);
// tandem evaluate --model DIR --data FILE [--unigram-from F.bin]
int RunEvaluateCommand(int argc, char** argv);
// tandem export --model DIR --out DIR [--dtype float16]
int RunExportCommand(int argc, char** argv);
// tandem edge --model DIR --prompt TEXT [--split 4 --exits 2,4 --threshold T]
int RunEdgeCommand(int argc, char** argv);
// tandem compare-formats: each edge weight format against libtorch fp32 on held-out text.
int RunCompareFormatsCommand(int argc, char** argv);

#endif  // TANDEM_EXAMPLES_TANDEM_CLI_COMMANDS_H_
