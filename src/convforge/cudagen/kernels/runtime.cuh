// Host-side runtime of the generated network: reading weights.bin, checking it against weights.json and the
// table compiled into network.cu (sizes, offsets, CRC-32), and small helpers. No kernels, no extra libraries.
// Layout: weights.bin is the float32 tensors back to back (each at a 64-byte aligned offset), little-endian.
// Speed vs cuDNN: not applicable (start-up only: about 1 GB/s for the CRC).
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cf {

struct WeightEntry {
  const char* name;
  long long offset;  // bytes from the start of weights.bin
  long long count;   // float32 values
};

inline uint32_t crc32(const unsigned char* data, size_t n) {
  static uint32_t table[256];
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path + "; pass --weights DIR (the generated project folder)");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The number after "key": at or after position `from` in a JSON text (our own manifest format), or -1.
inline long long json_number(const std::string& text, const std::string& key, size_t from = 0) {
  size_t p = text.find("\"" + key + "\":", from);
  if (p == std::string::npos) return -1;
  return std::atoll(text.c_str() + p + key.size() + 3);
}

// Checks weights.json against the table compiled into this program (same tensors, offsets, sizes, checksum).
inline void check_manifest(const std::string& dir, const WeightEntry* entries, int n, long long bytes,
                           uint32_t crc) {
  std::string path = dir + "/weights.json";
  std::string text = read_text(path);
  if (json_number(text, "bytes") != bytes || json_number(text, "crc32") != static_cast<long long>(crc))
    throw std::runtime_error(path + " does not match this program (size or checksum); re-run convforge codegen");
  for (int i = 0; i < n; ++i) {
    size_t p = text.find(std::string("\"name\": \"") + entries[i].name + "\"");
    if (p == std::string::npos || json_number(text, "offset", p) != entries[i].offset ||
        json_number(text, "count", p) != entries[i].count)
      throw std::runtime_error(path + " does not match this program at tensor " + entries[i].name +
                               "; re-run convforge codegen");
  }
}

// Reads weights.bin whole and verifies its size and CRC-32 before anything is copied to a GPU.
inline std::vector<unsigned char> read_weights(const std::string& dir, long long bytes, uint32_t crc) {
  std::string path = dir + "/weights.bin";
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("cannot open " + path + "; pass --weights DIR (the generated project folder)");
  long long size = static_cast<long long>(f.tellg());
  if (size != bytes)
    throw std::runtime_error(path + " has " + std::to_string(size) + " bytes, expected " + std::to_string(bytes) +
                             " (truncated or from another model); re-run convforge codegen");
  std::vector<unsigned char> data(static_cast<size_t>(bytes));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(data.data()), bytes);
  if (!f) throw std::runtime_error("cannot read " + path);
  uint32_t got = crc32(data.data(), data.size());
  if (got != crc)
    throw std::runtime_error(path + " is corrupt (CRC-32 " + std::to_string(got) + ", expected " +
                             std::to_string(crc) + "); re-run convforge codegen");
  return data;
}

}  // namespace cf
