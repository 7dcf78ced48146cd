// Compiled by MSBuild's RoslynCodeTaskFactory (build/Reference.Torch.targets): marks one symbol-version requirement of
// an ELF shared library weak, so that the dynamic loader accepts the library where no loaded library defines that version.
//
// Why: TorchSharp 0.107.0's native wrapper, libLibTorchSharp.so, was linked against GCC 13's libstdc++ and so requires
// GLIBCXX_3.4.32 for one symbol (std::ios_base_library_init) that is only referenced, never called. Debian 12's
// libstdc++ stops at GLIBCXX_3.4.30, and the loader refuses the library. A weak requirement (VER_FLG_WEAK in the
// Vernaux entry of .gnu.version_r) is reported by the loader only with LD_DEBUG, never refused.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class WeakVersionRequirement : Task
{
    /// <summary>The shared library to patch in place (skipped when absent).</summary>
    [Required]
    public string Library { get; set; } = "";

    /// <summary>The version whose requirement becomes weak, e.g. GLIBCXX_3.4.32.</summary>
    [Required]
    public string Version { get; set; } = "";

    /// <summary>The system library that may define it (e.g. libstdc++.so.6); when one of the candidates defines the
    /// version, nothing is patched.</summary>
    public string SystemCandidates { get; set; } = "";

    private const ushort VerFlagWeak = 0x2;
    private const uint ShtGnuVerneed = 0x6ffffffe;

    public override bool Execute()
    {
        if (!File.Exists(Library))
        {
            return true;
        }
        foreach (var candidate in SystemCandidates.Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(candidate) && Contains(File.ReadAllBytes(candidate), Encoding.ASCII.GetBytes(Version + "\0")))
            {
                Log.LogMessage(MessageImportance.Low, $"{candidate} defines {Version}: {Library} left as it is");
                return true;
            }
        }
        byte[] elf = File.ReadAllBytes(Library);
        string outcome = Patch(elf, Version);
        if (outcome == "patched")
        {
            File.WriteAllBytes(Library, elf);
            Log.LogMessage(MessageImportance.High, $"{Path.GetFileName(Library)}: the requirement of {Version} is now weak (the system's libstdc++ lacks it)");
        }
        else
        {
            Log.LogMessage(MessageImportance.Low, $"{Library}: {outcome}");
        }
        return true;
    }

    /// <summary>Sets VER_FLG_WEAK on every Vernaux entry naming <paramref name="version"/>; returns "patched", or why not.</summary>
    private static string Patch(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
        {
            return "not an ELF file";
        }
        if (elf[4] != 2 || elf[5] != 1)
        {
            return "not a 64-bit little-endian ELF file";
        }
        long sectionHeaders = (long)BitConverter.ToUInt64(elf, 0x28);
        int entrySize = BitConverter.ToUInt16(elf, 0x3A);
        int count = BitConverter.ToUInt16(elf, 0x3C);
        bool changed = false, found = false;
        for (int s = 0; s < count; s++)
        {
            long header = sectionHeaders + (long)s * entrySize;
            if (BitConverter.ToUInt32(elf, (int)header + 4) != ShtGnuVerneed)
            {
                continue;
            }
            long offset = (long)BitConverter.ToUInt64(elf, (int)header + 0x18);
            int link = (int)BitConverter.ToUInt32(elf, (int)header + 0x28);
            long strings = (long)BitConverter.ToUInt64(elf, (int)(sectionHeaders + (long)link * entrySize) + 0x18);
            long need = offset;
            while (true)
            {
                int auxCount = BitConverter.ToUInt16(elf, (int)need + 2);
                long aux = need + BitConverter.ToUInt32(elf, (int)need + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    uint name = BitConverter.ToUInt32(elf, (int)aux + 8);
                    if (ReadString(elf, strings + name) == version)
                    {
                        found = true;
                        ushort flags = BitConverter.ToUInt16(elf, (int)aux + 4);
                        if ((flags & VerFlagWeak) == 0)
                        {
                            BitConverter.GetBytes((ushort)(flags | VerFlagWeak)).CopyTo(elf, (int)aux + 4);
                            changed = true;
                        }
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, (int)aux + 12);
                    if (nextAux == 0)
                    {
                        break;
                    }
                    aux += nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, (int)need + 12);
                if (next == 0)
                {
                    break;
                }
                need += next;
            }
        }
        return changed ? "patched" : found ? $"the requirement of {version} is already weak" : $"no requirement of {version}";
    }

    private static string ReadString(byte[] elf, long at)
    {
        int end = (int)at;
        while (end < elf.Length && elf[end] != 0)
        {
            end++;
        }
        return Encoding.ASCII.GetString(elf, (int)at, end - (int)at);
    }

    private static bool Contains(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j])
            {
                j++;
            }
            if (j == needle.Length)
            {
                return true;
            }
        }
        return false;
    }
}
