// AML encodings checked against byte sequences from the ACPI specification (chapter 20) and
// what iasl emits for the same ASL.
#include <gtest/gtest.h>

#include "arch/x86_64/acpi/aml.h"
#include "base/error.h"

namespace kiln::acpi::aml {
namespace {

using B = Bytes;

TEST(Aml, PkgLengthUsesOneToFourBytesAndCountsItself) {
  EXPECT_EQ(pkg_length(0), (B{0x01}));
  EXPECT_EQ(pkg_length(62), (B{0x3f}));
  EXPECT_EQ(pkg_length(63), (B{0x41, 0x04}));  // 65 = 0x41: low nibble 1, then 0x04
  EXPECT_EQ(pkg_length(0xffd), (B{0x4f, 0xff}));
  EXPECT_EQ(pkg_length(0xffe), (B{0x81, 0x00, 0x01}));  // 0x1001
  EXPECT_EQ(pkg_length(0xffffc), (B{0x8f, 0xff, 0xff}));
  EXPECT_EQ(pkg_length(0xffffd), (B{0xc1, 0x00, 0x00, 0x01}));  // 0x100001
  EXPECT_EQ(pkg_length(0x0ffffffb), (B{0xcf, 0xff, 0xff, 0xff}));
  EXPECT_THROW(pkg_length(0x0ffffffc), Error);
}

TEST(Aml, NameStrings) {
  EXPECT_EQ(name_string("_SB"), (B{'_', 'S', 'B', '_'}));
  EXPECT_EQ(name_string("\\_SB"), (B{'\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(name_string("\\_SB.COM1"), (B{'\\', 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'}));
  EXPECT_EQ(name_string("A.B.C"),
            (B{0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'}));
  EXPECT_EQ(name_string("^^VR00"), (B{'^', '^', 'V', 'R', '0', '0'}));
  EXPECT_EQ(name_string("\\"), (B{'\\', 0x00}));
  for (const char* bad : {"", "1ABC", "ABCDE", "ab", "\\_SB.", "A..B", "A-B"})
    EXPECT_THROW(name_string(bad), Error) << bad;
}

TEST(Aml, IntegersTakeTheSmallestEncoding) {
  EXPECT_EQ(integer(0), (B{0x00}));
  EXPECT_EQ(integer(1), (B{0x01}));
  EXPECT_EQ(integer(2), (B{0x0a, 0x02}));
  EXPECT_EQ(integer(0xff), (B{0x0a, 0xff}));
  EXPECT_EQ(integer(0x1234), (B{0x0b, 0x34, 0x12}));
  EXPECT_EQ(integer(0xd0000000), (B{0x0c, 0x00, 0x00, 0x00, 0xd0}));
  EXPECT_EQ(integer(0x100000000), (B{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(integer(UINT64_MAX), (B{0xff}));
  EXPECT_EQ(dword(5), (B{0x0c, 5, 0, 0, 0}));
}

TEST(Aml, StringsAndEisaIds) {
  EXPECT_EQ(string("LNRO0005"), (B{0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0}));
  EXPECT_EQ(string(""), (B{0x0d, 0}));
  EXPECT_THROW(string(std::string_view("a\0b", 3)), Error);
  EXPECT_EQ(eisa_id("PNP0501"), (B{0x0c, 0x41, 0xd0, 0x05, 0x01}));
  EXPECT_EQ(eisa_id("PNP0A03"), (B{0x0c, 0x41, 0xd0, 0x0a, 0x03}));
  for (const char* bad : {"PNP050", "pnp0501", "PNP050G", "PNP05011"})
    EXPECT_THROW(eisa_id(bad), Error) << bad;
}

TEST(Aml, NamedObjectsAndPackages) {
  EXPECT_EQ(name("_HID", eisa_id("PNP0501")),
            (B{0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01}));
  // Name (\_S5, Package () {5, Zero, Zero, Zero})
  EXPECT_EQ(name("\\_S5", package({integer(5), integer(0), integer(0), integer(0)})),
            (B{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0}));
  EXPECT_EQ(scope("\\_SB", {}), (B{0x10, 0x06, '\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(device("COM1", {name("_UID", integer(0))}),
            (B{0x5b, 0x82, 0x0b, 'C', 'O', 'M', '1', 0x08, '_', 'U', 'I', 'D', 0x00}));
  // Method (_STA, 0, NotSerialized) { Return (0x0F) }
  EXPECT_EQ(method("_STA", 0, {return_value(integer(0x0f))}),
            (B{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f}));
  EXPECT_EQ(method("FOO", 2, {}), (B{0x14, 0x06, 'F', 'O', 'O', '_', 0x02}));
  EXPECT_THROW(method("FOO", 8, {}), Error);
  const uint8_t data[] = {1, 2, 3};
  EXPECT_EQ(buffer(data), (B{0x11, 0x06, 0x0a, 0x03, 1, 2, 3}));
}

TEST(Aml, LongBodiesGetLongerPkgLengths) {
  std::vector<Bytes> names;
  for (int i = 0; i < 20; ++i) names.push_back(name("_UID", integer(0x12345678)));  // 10 each
  const Bytes s = scope("_SB", names);  // body 4 + 200 = 204 -> 206 in two bytes
  ASSERT_EQ(s.size(), 1u + 2 + 204);
  EXPECT_EQ(s[0], 0x10);
  EXPECT_EQ(s[1], 0x40 | (206 & 0xf));
  EXPECT_EQ(s[2], 206 >> 4);
}

TEST(Aml, ResourceDescriptors) {
  EXPECT_EQ(memory32_fixed(true, 0xd0000000, 0x1000),
            (B{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00}));
  EXPECT_EQ(memory32_fixed(false, 0x1000, 0x10)[3], 0x00);
  EXPECT_EQ(interrupt({}, 5), (B{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00}));
  EXPECT_EQ(interrupt({.consumer = true, .edge = false, .active_low = true, .shared = true}, 17)[3],
            0x0d);
  EXPECT_EQ(io(0x3f8, 0x3f8, 0, 8), (B{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08}));
  EXPECT_EQ(irq_no_flags(4), (B{0x22, 0x10, 0x00}));
  EXPECT_EQ(irq_no_flags(12), (B{0x22, 0x00, 0x10}));
  EXPECT_THROW(irq_no_flags(16), Error);
}

TEST(Aml, ResourceTemplateEndsWithAChecksummedEndTag) {
  // 0x22 + 0x10 + 0x79 = 0xab; the checksum byte 0x55 makes the template sum to zero.
  EXPECT_EQ(resource_template({irq_no_flags(4)}),
            (B{0x11, 0x08, 0x0a, 0x05, 0x22, 0x10, 0x00, 0x79, 0x55}));
  const Bytes t = resource_template({memory32_fixed(true, 0xd0001000, 0x1000), interrupt({}, 6)});
  ASSERT_EQ(t.size(), 2u + 2 + 12 + 9 + 2);
  uint8_t sum = 0;
  for (size_t i = 4; i < t.size(); ++i) sum = static_cast<uint8_t>(sum + t[i]);
  EXPECT_EQ(sum, 0);
  EXPECT_EQ(t[t.size() - 2], 0x79);
}

}  // namespace
}  // namespace kiln::acpi::aml
