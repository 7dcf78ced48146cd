namespace Reference.Cli;

/// <summary>The entry point of the <c>reference</c> command.</summary>
public static class Program
{
    /// <summary>Runs the command with the process's standard streams and returns its exit code.</summary>
    public static int Main(string[] args)
    {
        // The gpu paths live in their own assembly (ILGPU); they join the registered algorithms before any command runs.
        Reference.Gpu.GpuPaths.Register();
        return Cli.Run(args, Console.Out, Console.Error);
    }
}
