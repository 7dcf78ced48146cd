using NUnit.Framework;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Numerics;
using Reference.Routing;

namespace Reference.CSharpTests;

/// <summary>
/// The public API used the way a C# user would: options records with initializers, result records with
/// deconstruction, .NET arrays in and out, and the harness driven from code rather than the CLI.
/// </summary>
public class ConsumerTests
{
    private static readonly double[,] Logits =
    {
        { 2.0, 1.0, 0.5, -1.0 },
        { 0.0, 0.0, 0.0, 0.0 },    // a four-way tie: the lower indices win
        { -3.0, 4.0, 4.0, 1.0 },   // a tie at the top
    };

    [Test]
    public void RoutesWithAnOptionsRecord()
    {
        var options = new TopKOptions { K = 2, Score = ScoreFunction.Softmax, Normalize = true };
        var (experts, weights, boundaryTie) = TopK.Route(Logits, options);

        Assert.That(experts[0, 0], Is.EqualTo(0));
        Assert.That(experts[0, 1], Is.EqualTo(1));
        Assert.That(new[] { experts[1, 0], experts[1, 1] }, Is.EqualTo(new[] { 0, 1 }));
        Assert.That(new[] { experts[2, 0], experts[2, 1] }, Is.EqualTo(new[] { 1, 2 }));
        // Row 0's normalized weights: softmax over the two selected logits, computed independently here.
        double w0 = 1.0 / (1.0 + Math.Exp(1.0 - 2.0));
        Assert.That(weights[0, 0], Is.EqualTo(w0).Within(1e-15));
        Assert.That(weights[0, 0] + weights[0, 1], Is.EqualTo(1.0).Within(1e-15));
        Assert.That(boundaryTie, Is.EqualTo(new[] { false, true, false }));
    }

    [Test]
    public void OptionsRecordsSupportWithExpressions()
    {
        var baseline = new TopKOptions { K = 1 };
        var biased = baseline with { Bias = new[] { 0.0, 0.0, 0.0, 5.0 }, Normalize = false };
        var result = TopK.Route(Logits, biased);
        for (int i = 0; i < 3; i++)
        {
            Assert.That(result.Experts[i, 0], Is.EqualTo(3), "the bias selects expert 3");
            Assert.That(result.Weights[i, 0], Is.LessThan(0.5), "but its weight is still the softmax score");
        }
        Assert.That(baseline.Bias, Is.Null, "with-expressions copy");
    }

    [Test]
    public void BadInputThrowsAnArgumentExceptionNamingTheArgument()
    {
        var bad = (double[,])Logits.Clone();
        bad[1, 2] = double.NaN;
        var ex = Assert.Throws<ArgumentException>(() => TopK.Route(bad, new TopKOptions()));
        Assert.That(ex!.ParamName, Is.EqualTo("logits"));
        Assert.That(ex.Message, Does.Contain("logits[1, 2] is NaN"));
    }

    [Test]
    public void ChecksACandidateThroughTheRegistry()
    {
        var topk = AlgorithmRegistry.Find("topk")!;
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.FromMatrix(Logits) };
        var call = topk.Bind(inputs, new Dictionary<string, string> { ["k"] = "2" }, "in-memory");
        var expected = topk.RunReference(call);

        // A float32 candidate from the kernel path passes.
        var candidate = topk.Run(call, "kernel");
        var reports = topk.Check(call, expected, candidate, "kernel");
        Assert.That(reports.Select(r => r.Passed), Is.All.True);

        // Swapping row 0's experts (not a tie there) fails, and the report says where.
        var experts = candidate["experts"].Values<int>().ToArray();
        (experts[0], experts[1]) = (experts[1], experts[0]);
        var swapped = new Dictionary<string, NdArray> { ["experts"] = NdArray.Create(experts, 3, 2) };
        var report = topk.Check(call, expected, swapped, "swapped").Single();
        Assert.That(report.Passed, Is.False);
        Assert.That(report.MismatchCount, Is.EqualTo(2));
        Assert.That(report.FirstMismatches[0].Index, Is.EqualTo("(0, 0)"));
    }

    [Test]
    public void WritesAndReadsTensorFiles()
    {
        var path = Path.Combine(Path.GetTempPath(), $"consumer-{Guid.NewGuid():N}.npz");
        try
        {
            var half = NdArray.Create(new[] { (Half)1.5, (Half)(-2.0) }, 2);
            var bf16 = NdArray.Create(new[] { BFloat16.FromSingle(3.25f) }, 1);
            TensorFile.Write(path, new Dictionary<string, NdArray> { ["logits"] = NdArray.FromMatrix(Logits), ["h"] = half });
            var back = TensorFile.Read(path);
            Assert.That(back["logits"].ToDoubles(), Is.EqualTo(NdArray.FromMatrix(Logits).ToDoubles()));
            Assert.That(back["h"].Values<Half>(), Is.EqualTo(half.Values<Half>()));
            Assert.That(bf16.Values<BFloat16>()[0].ToSingle(), Is.EqualTo(3.25f));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
