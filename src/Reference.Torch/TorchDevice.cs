using Reference.Harness.Registry;
using TorchSharp;

namespace Reference.Torch;

/// <summary>
/// The device a <c>torch</c> path runs on (<c>--device cpu|cuda</c>), and the loading of libtorch. Nothing here runs
/// when the paths are registered: libtorch is loaded by the first <c>torch</c> path that runs.
/// </summary>
public static class TorchDevice
{
    /// <summary>The torch device for a call's <see cref="AlgorithmCall.Device"/>.</summary>
    /// <param name="device">"cpu" or "cuda".</param>
    /// <returns>The device.</returns>
    /// <exception cref="InputException">"cuda" where the loaded libtorch has no CUDA, or no GPU is present; libtorch
    /// does not load.</exception>
    public static torch.Device For(string device)
    {
        EnsureLoaded();
        return device switch
        {
            Devices.Cpu => torch.CPU,
            Devices.Cuda when torch.cuda.is_available() => torch.CUDA,
            Devices.Cuda => throw new InputException(
                "--device cuda: the loaded libtorch has no CUDA device (this build references the CPU build of libtorch, "
                + "libtorch-cpu-linux-x64; README, \"The torch path\", says how to use a CUDA build)"),
            _ => throw new InputException($"option '--device' = '{device}' is not a device; devices: {string.Join(", ", Devices.Known)}"),
        };
    }

    /// <summary>Why the torch path cannot run on a device here (<see cref="OptimizedPath.Unavailable"/>): libtorch does
    /// not load, or the device is cuda and the loaded libtorch has none; null when it can. Loads libtorch.</summary>
    /// <param name="device">"cpu" or "cuda".</param>
    /// <returns>The one-line reason, or null.</returns>
    public static string? Unavailable(string device)
    {
        try
        {
            For(device);
            return null;
        }
        catch (InputException ex)
        {
            return ex.Message;
        }
    }

    /// <summary>Loads libtorch once, or says in one line why it cannot.</summary>
    /// <exception cref="InputException">libtorch or TorchSharp's native wrapper does not load.</exception>
    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (loaded)
            {
                return;
            }
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
                loaded = true;
            }
            catch (Exception ex) when (ex is not InputException)
            {
                throw new InputException($"the torch path cannot load libtorch: {Innermost(ex).Message}", ex);
            }
        }
    }

    /// <summary>The libtorch version the torch path runs on, e.g. "2.10.0+cpu" (loads libtorch).</summary>
    public static string LibTorchVersion
    {
        get
        {
            EnsureLoaded();
            return torch.__version__;
        }
    }

    private static readonly Lock Gate = new();

    private static bool loaded;

    private static Exception Innermost(Exception ex) => ex.InnerException is null ? ex : Innermost(ex.InnerException);
}
