"""Obviously-correct pure-Python reference models that property tests compare the compiled code against."""
