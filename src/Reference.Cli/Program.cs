namespace Reference.Cli;

/// <summary>The entry point of the <c>reference</c> command.</summary>
public static class Program
{
    /// <summary>Registers the optimized paths that live in their own assemblies, then runs the command with the process's
    /// standard streams and returns its exit code.</summary>
    public static int Main(string[] args)
    {
        Reference.Torch.TorchPaths.Register();
        // The gpu paths (ILGPU); registration creates no ILGPU context: the accelerator is created on the first run.
        Reference.Gpu.GpuPaths.Register();
        Reference.Harness.Bench.RoutingBench.Register();
        return Cli.Run(args, Console.Out, Console.Error);
    }
}
