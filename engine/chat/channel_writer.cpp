#include "engine/chat/channel_writer.h"

#include <algorithm>

namespace sibyl::engine {
namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

}  // namespace

ChannelWriter::ChannelWriter(const TextSink& sink, std::vector<std::string> stop_strings)
    : sink_(sink), stops_(std::move(stop_strings)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

bool ChannelWriter::emit(Channel channel, std::string_view text) { return !text.empty() && sink_(channel, text); }

bool ChannelWriter::write(Channel channel, std::string_view text) {
  if (channel == Channel::answer) {
    current_ = Channel::answer;
    reasoning_ws_.clear();
    return write_answer(text);
  }
  // Reasoning: hold trailing whitespace; it is emitted only if more reasoning follows.
  size_t end = text.size();
  while (end > 0 && is_space(text[end - 1])) --end;
  if (end == 0) {
    reasoning_ws_.append(text);
    return false;
  }
  std::string out = std::move(reasoning_ws_);
  reasoning_ws_.assign(text.substr(end));
  out.append(text.substr(0, end));
  return emit(Channel::reasoning, out);
}

bool ChannelWriter::write_answer(std::string_view text) {
  if (!answer_started_) {  // the format's blank line after </think> is not part of the answer
    size_t begin = 0;
    while (begin < text.size() && is_space(text[begin])) ++begin;
    text.remove_prefix(begin);
    if (text.empty()) return false;
    answer_started_ = true;
  }
  held_.append(text);
  for (const std::string& stop : stops_) {
    size_t at = held_.find(stop);
    if (at != std::string::npos) {
      hit_stop_ = true;
      emit(Channel::answer, std::string_view(held_).substr(0, at));
      held_.clear();
      return true;
    }
  }
  // Keep back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& stop : stops_)
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > keep; --n)
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string ready = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return emit(Channel::answer, ready);
}

bool ChannelWriter::finish() {
  std::string rest = std::move(held_);
  held_.clear();
  return emit(Channel::answer, rest);
}

}  // namespace sibyl::engine
