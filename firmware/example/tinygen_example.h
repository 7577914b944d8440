/* tinygen_example.h -- the example's one entry point, called by the board's main. */
#ifndef TINYGEN_EXAMPLE_H
#define TINYGEN_EXAMPLE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Init the model, run every example input, print the results on the HAL's serial port. */
void tinygen_example_run(void);

#ifdef __cplusplus
}
#endif

#endif /* TINYGEN_EXAMPLE_H */
