using NUnit.Framework;
namespace Reference.CSharpTests;
public class Smoke { [Test] public void Runs() => Assert.That(2, Is.EqualTo(2)); }
