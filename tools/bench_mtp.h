// sibyl-bench --mtp: decoding with speculative decoding (the model's MTP layer) against the same
// model without it, alternated rep by rep in one run, through the blocking generate call.
#pragma once
#include <sibyl/sibyl.h>

namespace sibyl::cli {

struct MtpComparison {
  double with_tokens_per_s = 0, without_tokens_per_s = 0;  // decode (after the first token), medians
  double tokens_per_rep = 0;                               // median tokens generated
  uint64_t drafted = 0, accepted = 0;                      // over all reps
};

// The same for `sessions` concurrent requests (submitted, chat prompts, one per session):
// aggregate decode rates, medians over reps.
struct MtpBatchComparison {
  long long sessions = 0;
  double with_tokens_per_s = 0, without_tokens_per_s = 0;
  uint64_t drafted = 0, accepted = 0;
};

// `with_mtp` and `without` are the same model loaded with mtp = 1 and 0. Each rep decodes up
// to n_gen tokens greedily (stopping at end-of-sequence) after a chat prompt — a question the
// reasoning models of the family answer — or random tokens when the model has no template.
MtpComparison compare_mtp(sibyl_model* with_mtp, sibyl_model* without, long long n_gen, long long reps);
MtpBatchComparison compare_mtp_batch(sibyl_model* with_mtp, sibyl_model* without, long long sessions, long long n_gen,
                                     long long reps);

}  // namespace sibyl::cli
