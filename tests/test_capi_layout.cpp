// The layout tables bindings check their struct mirrors against (sibyl_struct_*, ABI 0.8): every
// struct sibyl.h declares is listed, with every field in declaration order, at the offsets the
// compiler gives; unknown names answer 0 / SIZE_MAX / NULL. The header is parsed here so that a
// field added to sibyl.h without its table entry fails this test.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "sibyl/sibyl.h"

namespace {

std::string header_text() {
  std::ifstream in(SIBYL_HEADER_PATH);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // Comments out, so the declarations are all that is left.
  text = std::regex_replace(text, std::regex(R"(/\*[\s\S]*?\*/)"), " ");
  return std::regex_replace(text, std::regex(R"(//[^\n]*)"), " ");
}

// (struct name, field names in order) of every `typedef struct NAME { ... } NAME;` in sibyl.h.
std::vector<std::pair<std::string, std::vector<std::string>>> declared_structs() {
  const std::string text = header_text();
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  const std::regex decl(R"(typedef struct (\w+) \{([^}]*)\})");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), decl); it != std::sregex_iterator(); ++it) {
    std::vector<std::string> fields;
    std::stringstream body((*it)[2].str());
    std::string member;
    while (std::getline(body, member, ';')) {
      std::smatch m;
      // A function pointer names itself in "(*name)"; anything else ends with its name.
      if (std::regex_search(member, m, std::regex(R"(\(\s*\*\s*(\w+)\s*\))")) ||
          std::regex_search(member, m, std::regex(R"((\w+)\s*$)")))
        fields.push_back(m[1].str());
    }
    out.emplace_back((*it)[1].str(), fields);
  }
  return out;
}

TEST(CapiLayout, EveryDeclaredStructAndFieldIsListedInOrder) {
  const auto structs = declared_structs();
  ASSERT_GE(structs.size(), 15u) << "the header parser found too few structs";
  std::vector<std::string> listed;
  for (size_t i = 0; sibyl_struct_name(i); ++i) listed.push_back(sibyl_struct_name(i));
  ASSERT_EQ(listed.size(), structs.size());
  for (size_t i = 0; i < structs.size(); ++i) {
    const auto& [name, fields] = structs[i];
    EXPECT_EQ(listed[i], name);
    std::vector<std::string> table;
    for (size_t f = 0; sibyl_struct_field(name.c_str(), f); ++f) table.push_back(sibyl_struct_field(name.c_str(), f));
    EXPECT_EQ(table, fields) << name;
    EXPECT_GT(sibyl_struct_size(name.c_str()), 0u) << name;
    size_t previous = 0;
    for (const std::string& field : fields) {
      const size_t offset = sibyl_struct_offset(name.c_str(), field.c_str());
      ASSERT_NE(offset, SIZE_MAX) << name << "." << field;
      EXPECT_GE(offset, previous) << name << "." << field << " out of order";
      EXPECT_LT(offset, sibyl_struct_size(name.c_str())) << name << "." << field;
      previous = offset;
    }
  }
}

TEST(CapiLayout, MatchesThisCompilersLayout) {
  EXPECT_EQ(sibyl_struct_size("sibyl_event"), sizeof(sibyl_event));
  EXPECT_EQ(sibyl_struct_offset("sibyl_event", "name_len"), offsetof(sibyl_event, name_len));
  EXPECT_EQ(sibyl_struct_size("sibyl_chat_options"), sizeof(sibyl_chat_options));
  EXPECT_EQ(sibyl_struct_offset("sibyl_chat_options", "on_tool_call"), offsetof(sibyl_chat_options, on_tool_call));
  EXPECT_EQ(sibyl_struct_offset("sibyl_model_options", "mtp_max_batch"), offsetof(sibyl_model_options, mtp_max_batch));
  EXPECT_EQ(sibyl_struct_offset("sibyl_vulkan_device", "unlock_queue"), offsetof(sibyl_vulkan_device, unlock_queue));
}

TEST(CapiLayout, UnknownNamesAnswerNothing) {
  EXPECT_EQ(sibyl_struct_size("sibyl_no_such_struct"), 0u);
  EXPECT_EQ(sibyl_struct_size(nullptr), 0u);
  EXPECT_EQ(sibyl_struct_offset("sibyl_event", "no_such_field"), SIZE_MAX);
  EXPECT_EQ(sibyl_struct_offset("sibyl_no_such_struct", "text"), SIZE_MAX);
  EXPECT_EQ(sibyl_struct_offset("sibyl_event", nullptr), SIZE_MAX);
  EXPECT_EQ(sibyl_struct_field("sibyl_event", 1000), nullptr);
  EXPECT_EQ(sibyl_struct_field(nullptr, 0), nullptr);
  EXPECT_EQ(sibyl_struct_name(1000), nullptr);
}

}  // namespace
