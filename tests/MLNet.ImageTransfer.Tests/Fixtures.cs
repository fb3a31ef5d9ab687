namespace MLNet.ImageTransfer.Tests;

/// <summary>Paths of the committed reference fixtures (made by fixtures/generate_fixtures.py with Debian's PyTorch).</summary>
internal static class Fixtures
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures");
    public static string Path_(string name) => Path.Combine(Dir, name);
}
