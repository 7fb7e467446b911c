mod common; 
