namespace Reference.Routing;

/// <summary>
/// The gate-weight schedule of the released MaxScore code: the stage-2 (second) expert's gate is t * s with the temperature
/// t = max(4 - 3 step / decay, 1), decay = 30000 by default, falling linearly from 4 at step 0 to 1 at step = decay.
/// </summary>
public static class MaxScoreGateSchedule
{
    /// <summary>The released default decay, 30000 steps.</summary>
    public const double DefaultDecay = 30000;

    /// <summary>t = max(4 - 3 step / decay, 1).</summary>
    /// <param name="step">The training step, &gt;= 0.</param>
    /// <param name="decay">The decay length in steps, &gt; 0.</param>
    /// <returns>The multiplier t, in [1, 4].</returns>
    /// <exception cref="ArgumentException">A negative step, or a decay that is not positive and finite.</exception>
    public static double Temperature(double step, double decay = DefaultDecay)
    {
        if (!double.IsFinite(step) || step < 0)
        {
            throw new ArgumentException($"step = {Guard.Describe(step)} must be finite and >= 0", nameof(step));
        }
        if (!double.IsFinite(decay) || decay <= 0)
        {
            throw new ArgumentException($"decay = {Guard.Describe(decay)} must be finite and > 0", nameof(decay));
        }
        return Math.Max(4.0 - 3.0 * step / decay, 1.0);
    }

    /// <summary>The second expert's gate weight t * s.</summary>
    /// <param name="score">s, the second expert's score.</param>
    /// <param name="step">The training step, &gt;= 0.</param>
    /// <param name="decay">The decay length, &gt; 0.</param>
    public static double SecondExpertWeight(double score, double step, double decay = DefaultDecay) => Temperature(step, decay) * score;
}
