namespace Reference.CSharpTests;

public class Class1
{

}
