using Reference.Harness.Registry;

namespace Reference.Torch;

/// <summary>
/// The <c>torch</c> path of every algorithm it covers: batched TorchSharp tensor code, written the way GPU users write
/// these algorithms (no loops over tokens), in float32 on the device <c>--device</c> names. Registering adds the paths to
/// the registered algorithms (<see cref="Algorithm.AddPath"/>); it does not load libtorch.
/// </summary>
public static class TorchPaths
{
    /// <summary>The path's name, as <c>--path</c> and selfcheck use it.</summary>
    public const string Name = "torch";

    /// <summary>The devices the torch path runs on: cpu, and cuda where the loaded libtorch has it.</summary>
    public static IReadOnlyList<string> Devices { get; } = [Harness.Registry.Devices.Cpu, Harness.Registry.Devices.Cuda];

    /// <summary>Adds the torch paths to the registered algorithms; running it again does nothing.</summary>
    public static void Register()
    {
        Routing.RoutingTorchPaths.Register();
        Attention.AttentionTorchPaths.Register();
        Bench.AttentionBench.Register();
    }
}
