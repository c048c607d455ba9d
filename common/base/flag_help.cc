#include "common/base/flag_help.h"

#include <gflags/gflags.h>

#include <set>
#include <string_view>

namespace duet {

void PrintFlagHelp(const std::string& usage, const std::vector<FlagGroup>& groups,
                   std::FILE* out) {
  std::fprintf(out, "%s\n", usage.c_str());
  for (const FlagGroup& group : groups) {
    std::fprintf(out, "\n%s:\n", group.title.c_str());
    for (const std::string& name : group.flags) {
      gflags::CommandLineFlagInfo info;
      if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info)) {
        std::fprintf(out, "  --%s  (not defined)\n", name.c_str());
        continue;
      }
      const std::string value =
          info.type == "string" ? "\"" + info.default_value + "\"" : info.default_value;
      std::fprintf(out, "  --%s (%s, default %s)\n      %s\n", name.c_str(),
                   info.type.c_str(), value.c_str(), info.description.c_str());
    }
    for (const std::string& line : group.notes)
      std::fprintf(out, "      %s\n", line.c_str());
  }
  std::fprintf(out,
               "\n--helpfull lists every flag linked into the program (LibTorch, glog, "
               "gflags).\n");
}

bool PrintHelpIfAsked(int argc, char** argv, const std::string& usage,
                      const std::vector<FlagGroup>& groups) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "-help" || arg == "--help" || arg == "--helpshort") {
      PrintFlagHelp(usage, groups, stdout);
      return true;
    }
  }
  return false;
}

std::vector<std::string> FlagsOutsideGroups(const std::vector<FlagGroup>& groups,
                                            const std::string& own_dir) {
  std::set<std::string> allowed;
  for (const FlagGroup& g : groups) allowed.insert(g.flags.begin(), g.flags.end());
  std::vector<gflags::CommandLineFlagInfo> all;
  gflags::GetAllFlags(&all);
  std::vector<std::string> out;
  for (const gflags::CommandLineFlagInfo& f : all) {
    if (f.is_default || f.filename.find(own_dir) == std::string::npos) continue;
    if (allowed.count(f.name) == 0) out.push_back(f.name);
  }
  return out;
}

std::vector<std::string> TakeRepeatedFlag(const std::string& name, int* argc,
                                          char** argv) {
  std::vector<std::string> values;
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {  // the end of flags: the rest stays as is
      while (i < *argc) argv[kept++] = argv[i++];
      break;
    }
    bool taken = false;
    for (const std::string& dash : {std::string("--"), std::string("-")}) {
      const std::string flag = dash + name;
      if (arg.substr(0, flag.size() + 1) == flag + "=") {
        values.emplace_back(arg.substr(flag.size() + 1));
        taken = true;
      } else if (arg == flag && i + 1 < *argc) {
        values.emplace_back(argv[++i]);
        taken = true;
      }
      if (taken) break;
    }
    if (!taken) argv[kept++] = argv[i];
  }
  *argc = kept;
  argv[kept] = nullptr;
  return values;
}

}  // namespace duet
