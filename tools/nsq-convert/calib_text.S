/* calib_text.S - the default calibration text (calib-default.txt), built into
 * nsq-convert so that a conversion without --calib needs no other file. */
    .section .rodata
    .globl nsqconv_calib_text, nsqconv_calib_text_end
    .balign 16
nsqconv_calib_text:
    .incbin "tools/nsq-convert/calib-default.txt"
nsqconv_calib_text_end:
    .section .note.GNU-stack, "", @progbits
