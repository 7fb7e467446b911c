mod common; fn main(){}
