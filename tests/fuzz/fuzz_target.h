#pragma once
// What each fuzz target defines; fuzz_main.cpp supplies main() around them.
//
// A target feeds the bytes to one parser. Whatever the bytes, the parser must
// either accept them or throw the exception it documents for bad input:
// fuzz_one returns "" or that exception's message. Anything else escapes it:
// another exception (std::terminate aborts), a crash, a sanitizer report or
// a hang, which afl-fuzz saves as a finding.
#include <cstdint>
#include <span>
#include <string>

// Once per process, before the fork server starts (e.g. the op registry), so
// that work is not repeated for every input.
void fuzz_setup();

std::string fuzz_one(std::span<const uint8_t> bytes);

// The bytes as text, for the JSON parsers.
inline std::string fuzz_text(std::span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// What fuzz_one returns for a parser documented to throw `Error` on bad
// input: "" when `parse()` accepts, the error's message when it refuses
// (anything else it throws escapes, as a finding).
template <class Error, class Parse>
std::string accepted_or_refused(Parse&& parse) {
  try {
    parse();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
