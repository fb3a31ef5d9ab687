namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// A weight file that cannot be read because its content is invalid (truncated, corrupt, not the format): names the file
/// and what is wrong. An <see cref="IOException"/>, so code that handles I/O failures of a file handles this too
/// (<see cref="InvalidDataException"/> is sealed).
/// </summary>
/// <remarks>
/// The one error every weight reader throws for a bad file, whatever its bytes (see README, "Untrusted weight files"):
/// corrupt structure, absurd sizes, truncation, and pickles that ask for code. Errors of parsers the readers rely on
/// (.NET's zip reader, PureHDF) are wrapped in it, the original as <see cref="Exception.InnerException"/>.
/// </remarks>
public class WeightFileException : IOException
{
    public WeightFileException(string filePath, string problem, Exception? inner = null)
        : base($"Cannot read weight file '{filePath}': {problem}", inner)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The file path, or the name given for a stream.</summary>
    public string FilePath { get; }
    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; }
}
