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

// libjpeg reports errors through error_exit, which must not return: we
// longjmp back to the decode call and throw from there (never through C frames).
struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
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
  cinfo.out_color_space = JCS_RGB;  // libjpeg-turbo converts grayscale and YCbCr
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3 || cinfo.output_width > 65535 || cinfo.output_height > 65535) {
    std::snprintf(err.message, sizeof err.message, "unsupported JPEG (%d components, %ux%u)",
                  cinfo.output_components, cinfo.output_width, cinfo.output_height);
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
  if (!decode_jpeg_into(bytes, img, err)) throw std::runtime_error(std::string("corrupt JPEG: ") + err.message);
  return img;
}

RgbImage decode_png(std::span<const uint8_t> bytes) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
    throw std::runtime_error(std::string("corrupt PNG: ") + image.message);
  image.format = PNG_FORMAT_RGB;  // libpng's simplified API expands and strips for us
  RgbImage img;
  if (image.width > 65535 || image.height > 65535) {
    png_image_free(&image);
    throw std::runtime_error("PNG too large (" + std::to_string(image.width) + "x" + std::to_string(image.height) + ")");
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
