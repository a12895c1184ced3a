"""BEBR: recurrent binary embedding heads trained embedding-to-embedding on CLIP features."""
