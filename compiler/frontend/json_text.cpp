#include "compiler/frontend/json_text.h"

namespace kiln {

using json = nlohmann::json;

std::pair<size_t, size_t> line_column(const std::string& text, size_t byte_offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < text.size() && i + 1 < byte_offset; ++i) {
    if (text[i] == '\n') ++line, col = 1;
    else ++col;
  }
  return {line, col};
}

std::string json_pointer_segment(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

namespace {

std::string at_line_column(const std::string& text, size_t byte_offset) {
  auto [line, col] = line_column(text, byte_offset);
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

// Refuses nesting deeper than kMaxJsonDepth before the parser builds it:
// copying and printing a JSON value recurse once per level.
void check_depth(const std::string& text, const std::string& file) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw GraphError(file, {{"", "", "JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                                             " levels at " + at_line_column(text, i + 1) + "; no graph needs that"}});
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

// A SAX handler that only tracks where the parser is, so the first error can
// be given a JSON path.
class Locator {
 public:
  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(json::number_integer_t) { return value(); }
  bool number_unsigned(json::number_unsigned_t) { return value(); }
  bool number_float(json::number_float_t, const std::string&) { return value(); }
  bool string(std::string&) { return value(); }
  bool binary(json::binary_t&) { return value(); }
  bool start_object(std::size_t) {
    value();
    stack_.push_back({true, "", -1});
    return true;
  }
  bool key(std::string& k) {
    stack_.back().key = k;
    return true;
  }
  bool end_object() { return pop(); }
  bool start_array(std::size_t) {
    value();
    stack_.push_back({false, "", -1});
    return true;
  }
  bool end_array() { return pop(); }
  bool parse_error(std::size_t position, const std::string& token, const nlohmann::detail::exception&) {
    value();  // the value that failed takes the next array slot
    error_position = position;
    error_token = token;
    for (auto& level : stack_) segments.push_back(level.object ? level.key : std::to_string(level.index));
    return false;
  }

  std::size_t error_position = 0;
  std::string error_token;
  std::vector<std::string> segments;

 private:
  struct Level {
    bool object;
    std::string key;
    long index;
  };
  bool value() {
    if (!stack_.empty() && !stack_.back().object) ++stack_.back().index;
    return true;
  }
  bool pop() {
    stack_.pop_back();
    return true;
  }
  std::vector<Level> stack_;
};

constexpr int kMaxReportedNumbers = 20;

}  // namespace

JsonText parse_json_text(const std::string& text, const std::string& file) {
  check_depth(text, file);
  JsonText out;
  std::string patched = text;  // overflowing numbers replaced by "null" padded to the same length
  for (;;) {
    try {
      out.root = json::parse(patched);
      return out;
    } catch (const json::parse_error& e) {
      // Point at the start of the offending token, not at its last character.
      Locator loc;
      json::sax_parse(patched, &loc);
      size_t at = e.byte;
      size_t start = loc.error_token.empty() ? std::string::npos : patched.rfind(loc.error_token, loc.error_position);
      if (start != std::string::npos && start < at) at = start + 1;
      std::string what = e.what();
      auto pos = what.find("syntax error");
      out.problems.push_back({"", "", "not valid JSON: " + at_line_column(text, at) + ": " +
                                          (pos == std::string::npos ? what : what.substr(pos))});
      throw GraphError(file, std::move(out.problems));
    } catch (const json::out_of_range& e) {
      // "number overflow": locate it, read it as null, and parse again.
      Locator loc;
      json::sax_parse(patched, &loc);
      size_t start = patched.rfind(loc.error_token, loc.error_position);
      if (loc.error_token.size() < 4 || start == std::string::npos) {
        out.problems.push_back({"", "", std::string("not valid JSON: ") + e.what()});
        throw GraphError(file, std::move(out.problems));
      }
      if (static_cast<int>(out.problems.size()) >= kMaxReportedNumbers) throw GraphError(file, std::move(out.problems));
      patched.replace(start, loc.error_token.size(), "null" + std::string(loc.error_token.size() - 4, ' '));
      std::string path;
      for (auto& s : loc.segments) path += "/" + json_pointer_segment(s);
      out.problems.push_back({path, "", "number " + loc.error_token + " is not finite (too large for a double), at " +
                                            at_line_column(text, start + 1)});
      out.problem_segments.push_back(std::move(loc.segments));
    }
  }
}

}  // namespace kiln
