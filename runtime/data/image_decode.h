#pragma once
// Decodes one JPEG or PNG held in memory to 8-bit RGB, channels last.
// Grayscale and palette images are expanded to RGB; alpha is dropped;
// 16-bit PNG samples are reduced to 8 bits.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kiln::data {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3, row-major RGB
};

// Sniffs the format from the bytes. Throws std::runtime_error with a short
// reason ("corrupt JPEG: Premature end of JPEG file", "not a JPEG or PNG
// image"); callers add the file or archive member name. libjpeg warnings
// (corrupt data it would silently patch over) count as errors. An image over
// 2^26 pixels (8192x8192) is refused from its header, before its pixels are
// allocated.
RgbImage decode_image(std::span<const uint8_t> bytes);

// Encoders, for tests and fixtures.
std::vector<uint8_t> encode_png_rgb(const RgbImage& img);
std::vector<uint8_t> encode_jpeg_rgb(const RgbImage& img, int quality);

}  // namespace kiln::data
