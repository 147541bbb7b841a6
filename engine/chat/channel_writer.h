// Shapes the decoded text of a reply into the two channels: trims the whitespace the
// format puts around </think>, and ends the answer at the first stop string (holding
// back text that could be the start of one until it is decided).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat/reasoning.h"

namespace sibyl::engine {

class ChannelWriter {
 public:
  ChannelWriter(const TextSink& sink, std::vector<std::string> stop_strings);

  // Returns true when generation must stop (the sink asked, or a stop string was hit).
  bool write(Channel channel, std::string_view text);
  // Everything held back is final now (end of generation).
  bool finish();
  bool hit_stop_string() const { return hit_stop_; }

 private:
  bool emit(Channel channel, std::string_view text);
  bool write_answer(std::string_view text);

  const TextSink& sink_;
  std::vector<std::string> stops_;
  Channel current_ = Channel::reasoning;
  std::string reasoning_ws_;  // trailing whitespace of the reasoning, dropped at </think>
  bool answer_started_ = false;
  std::string held_;          // answer text that may begin a stop string
  bool hit_stop_ = false;
};

}  // namespace sibyl::engine
