#include "runtime/data/image_decode.h"

// jpeglib.h needs FILE and size_t declared first.
#include <cstdio>
#include <cstring>
#include <csetjmp>
#include <cstdlib>
#include <stdexcept>

#include <jpeglib.h>
#include <png.h>

namespace kiln::data {

namespace {

// Checked against the header, before anything the size of the image is
// allocated: a corrupt or hostile header (a few bytes claiming 32767x32767)
// must not make the importer allocate gigabytes to find the data missing.
// Images are stacked into one tensor, so none needs to be larger.
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 26;  // 8192 x 8192: 192 MiB of RGB

// False, with the reason written to `why`, when an image of this size is
// refused. No C++ objects: the JPEG decoder calls it between setjmp and longjmp.
bool size_acceptable(const char* format, uint64_t width, uint64_t height, char* why, size_t why_size) {
  if (width >= 1 && height >= 1 && width <= 65535 && height <= 65535 && width * height <= kMaxImagePixels) return true;
  std::snprintf(why, why_size, "%s of %llux%llu pixels is too large (at most %llu pixels, e.g. 8192x8192)", format,
                static_cast<unsigned long long>(width), static_cast<unsigned long long>(height),
                static_cast<unsigned long long>(kMaxImagePixels));
  return false;
}

// libjpeg reports errors through error_exit, which must not return: we
// longjmp back to the decode call and throw from there (never through C frames).
struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool refused = false;  // we refused a readable image (its size, its components), libjpeg did not fail
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

void jpeg_emit_message(j_common_ptr cinfo, int level) {
  // level < 0 is a warning: the data is corrupt and libjpeg would fill in
  // gray. An importer must not invent pixels, so it is an error.
  if (level < 0) jpeg_error_exit(cinfo);
}

// Returns false with err.message set on failure. Kept free of C++ objects
// with destructors: longjmp must not skip any.
bool decode_jpeg_into(std::span<const uint8_t> bytes, RgbImage& img, JpegError& err) {
  jpeg_decompress_struct cinfo{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_emit_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // Before jpeg_start_decompress, which allocates a progressive image's coefficients.
  if (!size_acceptable("JPEG", cinfo.image_width, cinfo.image_height, err.message, sizeof err.message)) {
    err.refused = true;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;  // libjpeg-turbo converts grayscale and YCbCr
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3) {
    std::snprintf(err.message, sizeof err.message, "unsupported JPEG (%d components, %ux%u)",
                  cinfo.output_components, cinfo.output_width, cinfo.output_height);
    err.refused = true;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  img.width = static_cast<int>(cinfo.output_width);
  img.height = static_cast<int>(cinfo.output_height);
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * img.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

RgbImage decode_jpeg(std::span<const uint8_t> bytes) {
  RgbImage img;
  JpegError err{};
  if (!decode_jpeg_into(bytes, img, err))
    throw std::runtime_error(err.refused ? std::string(err.message) : std::string("corrupt JPEG: ") + err.message);
  return img;
}

RgbImage decode_png(std::span<const uint8_t> bytes) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
    throw std::runtime_error(std::string("corrupt PNG: ") + image.message);
  image.format = PNG_FORMAT_RGB;  // libpng's simplified API expands and strips for us
  RgbImage img;
  if (char why[160]; !size_acceptable("PNG", image.width, image.height, why, sizeof why)) {
    png_image_free(&image);
    throw std::runtime_error(why);
  }
  img.width = static_cast<int>(image.width);
  img.height = static_cast<int>(image.height);
  img.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, img.pixels.data(), 0, nullptr)) {
    std::string msg = image.message;
    png_image_free(&image);
    throw std::runtime_error("corrupt PNG: " + msg);
  }
  return img;
}

}  // namespace

RgbImage decode_image(std::span<const uint8_t> bytes) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return decode_jpeg(bytes);
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return decode_png(bytes);
  throw std::runtime_error(bytes.empty() ? "empty file, not an image" : "not a JPEG or PNG image (unknown magic bytes)");
}

std::vector<uint8_t> encode_png_rgb(const RgbImage& img) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(img.width);
  image.height = static_cast<png_uint_32>(img.height);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, img.pixels.data(), 0, nullptr))
    throw std::runtime_error(std::string("PNG encode failed: ") + image.message);
  std::vector<uint8_t> out(size);
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, img.pixels.data(), 0, nullptr))
    throw std::runtime_error(std::string("PNG encode failed: ") + image.message);
  out.resize(size);
  return out;
}

std::vector<uint8_t> encode_jpeg_rgb(const RgbImage& img, int quality) {
  jpeg_compress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buf);
    throw std::runtime_error(std::string("JPEG encode failed: ") + err.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = static_cast<JDIMENSION>(img.width);
  cinfo.image_height = static_cast<JDIMENSION>(img.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(img.pixels.data()) + static_cast<size_t>(cinfo.next_scanline) * img.width * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> out(buf, buf + size);
  jpeg_destroy_compress(&cinfo);
  std::free(buf);
  return out;
}

}  // namespace kiln::data
