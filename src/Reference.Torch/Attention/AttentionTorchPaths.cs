namespace Reference.Torch.Attention;

/// <summary>The torch paths of the attention algorithms (<see cref="TorchPaths"/>).</summary>
public static class AttentionTorchPaths
{
    /// <summary>Adds them to the registered algorithms; running it again does nothing.</summary>
    public static void Register()
    {
    }
}
