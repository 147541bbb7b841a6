// The SibylNpc module: an actor component and a game-instance subsystem over the Sibyl C++ SDK
// (header-only, C++17) and the shared library libsibyl (a C ABI, so any C++ standard library
// on either side: Unreal's libc++ on Linux, libsibyl's own libstdc++).
//
// Expected layout inside the plugin (README.md says where each file comes from):
//   ThirdParty/Sibyl/include/sibyl/sibyl.h, sibyl.hpp
//   ThirdParty/Sibyl/lib/Win64/sibyl.dll, sibyl.lib      (sibyl.lib: the DLL's import library)
//   ThirdParty/Sibyl/lib/Linux/libsibyl.so, libsibyl.so.0  (one file under two names: the linker
//                                                          reads the first, the game loads the
//                                                          second, its SONAME)
//   ThirdParty/Sibyl/lib/Mac/libsibyl.0.dylib            (named as its install name)
//   Resources/Models/<model>/...                         (optional: a model staged with the game)
using System.IO;
using UnrealBuildTool;

public class SibylNpc : ModuleRules
{
	public SibylNpc(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
		PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine", "DeveloperSettings" });
		PrivateDependencyModuleNames.AddRange(new string[] { "Projects" }); // IPluginManager: the plugin's directory

		// The engine-independent core (shared model, NPC brain): plain C++17, built and tested
		// without Unreal by samples/unreal/CMakeLists.txt.
		PrivateIncludePaths.Add(Path.Combine(ModuleDirectory, "Private", "Core"));

		string SibylDir = Path.Combine(PluginDirectory, "ThirdParty", "Sibyl");
		string IncludeDir = Path.Combine(SibylDir, "include");
		RequireFile(Path.Combine(IncludeDir, "sibyl", "sibyl.h"));
		RequireFile(Path.Combine(IncludeDir, "sibyl", "sibyl.hpp"));
		PrivateIncludePaths.Add(IncludeDir);
		// Unreal modules build without C++ exceptions; the SDK detects that by itself, this only
		// makes it explicit (every SDK call returns sibyl::Error / sibyl::Result instead).
		PrivateDefinitions.Add("SIBYL_HPP_EXCEPTIONS=0");

		// Staged at the same place relative to the plugin in the packaged game, where
		// StartupModule (Windows, Mac) and the RPATH (Linux) look for it.
		string Platform = Target.Platform.ToString();
		string LibDir = Path.Combine(SibylDir, "lib", Platform);
		string StagedDir = "$(PluginDir)/ThirdParty/Sibyl/lib/" + Platform + "/";
		if (Target.Platform == UnrealTargetPlatform.Win64)
		{
			// Linked against the import library and loaded late: StartupModule loads the DLL
			// from the plugin's directory first (Windows would not search there by itself).
			PublicAdditionalLibraries.Add(RequireFile(Path.Combine(LibDir, "sibyl.lib")));
			PublicDelayLoadDLLs.Add("sibyl.dll");
			RequireFile(Path.Combine(LibDir, "sibyl.dll"));
			RuntimeDependencies.Add(StagedDir + "sibyl.dll");
		}
		else if (Target.Platform == UnrealTargetPlatform.Linux)
		{
			// Linked directly: the module needs libsibyl.so.0 (the SONAME the linker finds in
			// libsibyl.so) and the build records an $ORIGIN-relative RPATH to this directory.
			PublicAdditionalLibraries.Add(RequireFile(Path.Combine(LibDir, "libsibyl.so")));
			RequireFile(Path.Combine(LibDir, "libsibyl.so.0"));
			RuntimeDependencies.Add(StagedDir + "libsibyl.so.0");
		}
		else if (Target.Platform == UnrealTargetPlatform.Mac)
		{
			PublicDelayLoadDLLs.Add(RequireFile(Path.Combine(LibDir, "libsibyl.0.dylib")));
			RuntimeDependencies.Add(StagedDir + "libsibyl.0.dylib");
		}
		else
		{
			throw new BuildException("SibylNpc: no libsibyl for " + Platform + " (this sample knows Win64, Linux and Mac)");
		}

		// A model shipped inside the plugin is staged as loose files (NonUFS): the library
		// memory-maps them with the operating system's file API, which cannot read a .pak.
		string ModelsDir = Path.Combine(PluginDirectory, "Resources", "Models");
		if (Directory.Exists(ModelsDir))
		{
			foreach (string ModelFile in Directory.EnumerateFiles(ModelsDir, "*", SearchOption.AllDirectories))
			{
				RuntimeDependencies.Add(ModelFile, StagedFileType.NonUFS);
			}
		}
	}

	private static string RequireFile(string FilePath)
	{
		if (!File.Exists(FilePath))
		{
			throw new BuildException("SibylNpc: " + FilePath + " is missing (see the plugin's README.md: installing)");
		}
		return FilePath;
	}
}
